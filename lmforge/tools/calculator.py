"""The `calculator` tool: exact decimal arithmetic through a small parser, never `eval`.

    from lmforge.tools.calculator import calculate
    calculate("7 + 5")            # "12"
    calculate("(2,5 + 1) × 4")    # "14"   (Norwegian decimal comma, × and ÷ as well as * and /)
    calculate("2 ** 10")          # "1024" (also 2^10)
    calculate("9**9**9")          # "error: the result would have about 369693100 digits; the limit is 30"

    python -m lmforge.tools.calculator "3 × (4 + 2)"

Grammar (precedence climbing, powers right-associative as in Python):

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "×" | "·" | "/" | "÷") factor)*
    factor := ("+" | "-") factor | power
    power  := atom (("**" | "^") factor)?
    atom   := number | "(" expr ")"

Numbers are decimals with a point or a comma ("2.5", "2,5"); anything else (names,
attributes, calls, strings) is refused. Every quantity is bounded before it is computed:
at most MAX_CHARS of input, MAX_DEPTH nested parentheses, operands of MAX_DIGITS digits,
integer exponents up to MAX_EXPONENT whose result would have at most MAX_RESULT_DIGITS
digits, and results within the same size. Arithmetic is `decimal.Decimal` at 28
significant digits, so 0.1 + 0.2 is 0.3. A bad expression never raises: `calculate`
returns "error: ..." for the model to read.
"""
from __future__ import annotations

import decimal
import math
import sys
from decimal import Decimal

MAX_CHARS = 200            # longer input is refused before it is read
MAX_DEPTH = 20             # nested parentheses (and unary signs) before "too deeply nested"
MAX_DIGITS = 15            # digits of one number in the input
MAX_EXPONENT = 64          # |exponent| of a power
MAX_RESULT_DIGITS = 30     # integer digits of any intermediate or final result
RESULT_DECIMALS = 10       # a fraction is shown with at most this many decimals

_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation,
                                                                            decimal.DivisionByZero,
                                                                            decimal.Overflow])
_TIMES = {"*", "×", "·", "x"}
_DIVIDE = {"/", "÷", ":"}


class CalculatorError(ValueError):
    """A refused expression; the message is what the model reads after "error: "."""


def _tokens(text: str) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char.isdigit() or (char in ".," and i + 1 < len(text) and text[i + 1].isdigit()):
            start = i
            while i < len(text) and (text[i].isdigit() or (text[i] in ".," and i + 1 < len(text)
                                                            and text[i + 1].isdigit())):
                i += 1
            tokens.append(text[start:i])
        elif text.startswith("**", i):
            tokens.append("**")
            i += 2
        elif char in "+-−*×·/÷:^()":
            tokens.append("-" if char == "−" else char)
            i += 1
        elif char in "xX" and tokens and (tokens[-1][0].isdigit() or tokens[-1] == ")"):
            tokens.append("x")      # "3 x 4": a times sign between operands, not a name
            i += 1
        elif char.isalpha() or char == "_":
            start = i
            while i < len(text) and (text[i].isalnum() or text[i] in "_."):
                i += 1
            raise CalculatorError(f"names are not allowed ({text[start:i]!r}): give numbers and + - * / ** ( )")
        else:
            raise CalculatorError(f"unexpected character {char!r}")
    return tokens


def _number(token: str) -> Decimal:
    if token.count(".") + token.count(",") > 1:
        raise CalculatorError(f"{token!r} is not a number (one decimal point or comma at most)")
    if sum(c.isdigit() for c in token) > MAX_DIGITS:
        raise CalculatorError(f"{token!r} has more than {MAX_DIGITS} digits")
    return Decimal(token.replace(",", "."))


def _check_size(value: Decimal) -> Decimal:
    if value and value.adjusted() >= MAX_RESULT_DIGITS:
        raise CalculatorError(f"a result has more than {MAX_RESULT_DIGITS} digits")
    return value


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise CalculatorError("the expression ends too early")
        self.i += 1
        return token

    def nested(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError(f"more than {MAX_DEPTH} nested parentheses or signs")

    def expr(self) -> Decimal:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term()
            value = _check_size(_CONTEXT.add(value, right) if op == "+" else _CONTEXT.subtract(value, right))
        return value

    def term(self) -> Decimal:
        value = self.factor()
        while self.peek() in _TIMES | _DIVIDE:
            op = self.take()
            right = self.factor()
            if op in _DIVIDE:
                if right == 0:
                    raise CalculatorError("division by zero")
                value = _CONTEXT.divide(value, right)
            else:
                value = _CONTEXT.multiply(value, right)
            _check_size(value)
        return value

    def factor(self) -> Decimal:
        if self.peek() in ("+", "-"):
            self.nested()
            sign = self.take()
            value = self.factor()
            self.depth -= 1
            return -value if sign == "-" else value
        return self.power()

    def power(self) -> Decimal:
        base = self.atom()
        if self.peek() in ("**", "^"):
            self.take()
            self.nested()
            exponent = self.factor()          # right-associative: 2 ** 3 ** 2 = 2 ** 9
            self.depth -= 1
            return _power(base, exponent)
        return base

    def atom(self) -> Decimal:
        token = self.take()
        if token == "(":
            self.nested()
            value = self.expr()
            if self.peek() != ")":
                raise CalculatorError("a parenthesis is not closed")
            self.take()
            self.depth -= 1
            return value
        if token[0].isdigit() or token[0] in ".,":
            return _number(token)
        raise CalculatorError(f"expected a number or '(' but found {token!r}")


def _power(base: Decimal, exponent: Decimal) -> Decimal:
    if exponent != exponent.to_integral_value():
        raise CalculatorError("only whole-number exponents are allowed")
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"the exponent {exponent} is too large (at most {MAX_EXPONENT})")
    n = int(exponent)
    if base == 0 and n < 0:
        raise CalculatorError("division by zero")
    if base != 0:
        # the result's size is known before it is computed: n * log10|base| digits
        digits = n * math.log10(abs(float(base)))
        if digits >= MAX_RESULT_DIGITS:
            raise CalculatorError(f"the result would have about {digits:.0f} digits; the limit is "
                                  f"{MAX_RESULT_DIGITS}")
    return _check_size(_CONTEXT.power(base, n))


def evaluate(expression: str) -> Decimal:
    """The value of an expression; CalculatorError when it is refused."""
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_CHARS} characters")
    tokens = _tokens(expression)
    if not tokens:
        raise CalculatorError("the expression is empty")
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.peek() is not None:
        raise CalculatorError(f"unexpected {parser.peek()!r} after a complete expression")
    return value


def format_number(value: Decimal) -> str:
    """12 for twelve, 2.5, 3.3333333333 (at most RESULT_DECIMALS decimals), never an exponent."""
    if value == value.to_integral_value():
        return str(int(value))
    rounded = value.quantize(Decimal(1).scaleb(-RESULT_DECIMALS), context=_CONTEXT)
    text = format(rounded.normalize(context=_CONTEXT), "f")
    return "0" if text in ("-0", "0") else text


def calculate(expression: str = "") -> str:
    """Arithmetic on decimal numbers: + - * / (also × ÷), ** or ^ with whole exponents, parentheses.
    A decimal comma works too (2,5)."""
    try:
        return format_number(evaluate(expression))
    except CalculatorError as err:
        return f"error: {err}"
    except (decimal.DecimalException, OverflowError, RecursionError, ValueError) as err:
        return f"error: cannot compute this ({type(err).__name__})"


calculate.parameters = {"type": "object", "properties": {
    "expression": {"type": "string", "description": "e.g. 7 + 5, (12 - 3) * 4, 2 ** 10"}}, "required": ["expression"]}


if __name__ == "__main__":
    print(calculate(" ".join(sys.argv[1:])))
