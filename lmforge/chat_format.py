"""The chat format: how a conversation, its tool calls and tool results become token ids.

    from lmforge.chat_format import call_text, parse_call, tools_line
    ids, loss_mask = tokenizer.render_chat(messages, add_generation_prompt=True, tools=schemas)
    call_text("calculator", {"expression": "7 + 5"})     # 'calculator {"expression": "7 + 5"}'
    parse_call('calculator {"expression": "7 + 5"}')      # ("calculator", {"expression": "7 + 5"})

One format, used by the renderer (`render`, behind `Tokenizer.render_chat`), the Jinja
`CHAT_TEMPLATE` (transformers' `apply_chat_template(messages, tools=...)`), the export and
the engine's tool loop (lmforge/engine/tool_loop.py):

    <|bos|>[<|system|>Tools: calculator(expression), lookup(query)<|end|>]
    <|user|>Ada has 7 apples ...<|end|>
    <|assistant|><|tool_call|>calculator {"expression": "7 + 5"}<|tool_call_end|>
    <|tool|>12<|end|>
    <|assistant|>7 + 5 = 12. The answer is 12.<|end|>

A tool call is the tool's name, a space and its arguments as a JSON object, between the
special tokens <|tool_call|> and <|tool_call_end|>. An assistant message that calls a tool
ends with the call (no <|end|>): the engine appends the result as a `tool` message plus
<|assistant|> and the answer goes on. Tools are declared in a first system turn that names
each tool and its parameters (the JSON schemas themselves would fill a small model's
context). Arguments given as a string (OpenAI's wire format) are written as they are;
as a mapping (Hugging Face's), as `json.dumps(..., ensure_ascii=False)`, which is what
transformers' `tojson` filter writes.

The loss mask is 1 on what the model says: assistant content, its tool calls with their
two special tokens, and the <|end|> that closes a final answer. Role tokens, the tools
line and tool results are 0: the model never learns to write a tool's output.

Tokenizers trained before tool use have no tool tokens; `render` then refuses tool
messages, tool calls and tool declarations with one line, and such a tokenizer saves
`LEGACY_CHAT_TEMPLATE`.
"""
from __future__ import annotations

import json

TOOL_TOKENS = ("<|tool_call|>", "<|tool_call_end|>", "<|tool|>")
ROLES = ("system", "user", "assistant", "tool")
# Strings of the tool format that the BPE learns merges from too (FORMAT_SAMPLE_COPIES copies
# each, beside the corpus; they never reach the token shards, so the pretraining text is the
# same). Without them a tokenizer trained on the world alone spells 'calculator {"expression":
# "7 + 5"}' in 22 tokens and the tools line in 27; with them in 10 and 10.
FORMAT_SAMPLES = ('calculator {"expression": "7 + 5"}', 'lookup {"query": "Ada Berg"}',
                  "Tools: calculator(expression), lookup(query)", "[1] score 12.5: ")
FORMAT_SAMPLE_COPIES = 200

# Every tag strips the whitespace around it, so the layout below never leaks into the output.
# The `generation` block marks what the model says, so transformers'
# return_assistant_tokens_mask gives render()'s loss mask (tests/test_tokenizer.py).
CHAT_TEMPLATE = """\
{{- '<|bos|>' -}}
{%- if tools -%}
    {{- '<|system|>Tools: ' -}}
    {%- for tool in tools -%}
        {%- set fn = tool['function'] if tool['function'] is defined else tool -%}
        {%- set params = fn['parameters'] if fn['parameters'] is defined and fn['parameters'] is mapping else {} -%}
        {%- set props = params['properties'] if params['properties'] is defined and params['properties'] is mapping else {} -%}
        {{- (', ' if not loop.first else '') ~ fn['name'] ~ '(' ~ (props | join(', ')) ~ ')' -}}
    {%- endfor -%}
    {{- '<|end|>' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] -%}
        {{- raise_exception('unknown chat role ' ~ message['role'] ~ '; allowed: system, user, assistant, tool') -}}
    {%- endif -%}
    {%- set content = message['content'] if message['content'] is defined and message['content'] is not none else '' -%}
    {%- if content is not string -%}
        {{- raise_exception('chat message content must be a string') -}}
    {%- endif -%}
    {%- set calls = message['tool_calls'] if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] else [] -%}
    {{- '<|' ~ message['role'] ~ '|>' -}}
    {%- if message['role'] == 'assistant' -%}
        {%- generation -%}
        {{- content -}}
        {%- for call in calls -%}
            {%- set fn = call['function'] if call['function'] is defined else call -%}
            {%- set args = fn['arguments'] if fn['arguments'] is defined and fn['arguments'] is not none else {} -%}
            {{- '<|tool_call|>' ~ fn['name'] ~ ' ' ~ (args if args is string else args | tojson) ~ '<|tool_call_end|>' -}}
        {%- endfor -%}
        {%- if not calls -%}
            {{- '<|end|>' -}}
        {%- endif -%}
        {%- endgeneration -%}
    {%- else -%}
        {{- content ~ '<|end|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
{%- endif -%}
"""

# The template of tokenizers without tool tokens (runs from before tool use), unchanged.
LEGACY_CHAT_TEMPLATE = """\
{{- '<|bos|>' -}}
{%- for message in messages -%}
    {%- if message['role'] not in ['system', 'user', 'assistant'] -%}
        {{- raise_exception('unknown chat role ' ~ message['role'] ~ '; allowed: system, user, assistant') -}}
    {%- endif -%}
    {%- if message['content'] is not string -%}
        {{- raise_exception('chat message content must be a string') -}}
    {%- endif -%}
    {{- '<|' ~ message['role'] ~ '|>' ~ message['content'] ~ '<|end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
{%- endif -%}
"""


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered, phrased as one line."""


class CallError(ValueError):
    """A tool call the model wrote that does not parse; the message is what the model is told."""


# ---------------------------------------------------------------- pieces of the format

def function_of(entry: dict) -> dict:
    """The {"name", "parameters" | "arguments"} part of a tool schema or a tool call, in either the
    OpenAI / HF nesting ({"type": "function", "function": {...}}) or flat."""
    inner = entry.get("function") if isinstance(entry, dict) else None
    return inner if isinstance(inner, dict) else entry


def tools_line(tools: list) -> str:
    """The declaration the model reads: "Tools: calculator(expression), lookup(query)"."""
    parts = []
    for index, tool in enumerate(tools):
        fn = function_of(tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ChatFormatError(f"tool {index}: needs a name (a JSON schema like {{\"type\": \"function\", "
                                  f"\"function\": {{\"name\": ..., \"parameters\": ...}}}})")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        names = [str(key) for key in props] if isinstance(props, dict) else []
        parts.append(f"{fn['name']}({', '.join(names)})")
    return "Tools: " + ", ".join(parts)


def call_text(name: str, arguments) -> str:
    """What stands between <|tool_call|> and <|tool_call_end|>."""
    return f"{name} {arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)}"


def parse_call(text: str) -> tuple[str, dict]:
    """(name, arguments) of a call's text; CallError with a short reason the model can read."""
    text = text.strip()
    name, _, rest = text.partition(" ")
    if "{" in name:         # "calculator{...}": the space is missing, the call is still clear
        name, rest = name[:name.index("{")], name[name.index("{"):] + " " + rest
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise CallError(f"a call is a tool name, a space and JSON arguments; got {text[:60]!r}")
    rest = rest.strip() or "{}"
    try:
        arguments = json.loads(rest)
    except json.JSONDecodeError as err:
        raise CallError(f"the arguments of {name} are not JSON ({err.msg})") from None
    if not isinstance(arguments, dict):
        raise CallError(f"the arguments of {name} must be a JSON object")
    return name, arguments


# ---------------------------------------------------------------- rendering

def _check(messages, has_tools: bool) -> None:
    if not isinstance(messages, (list, tuple)):
        raise ChatFormatError(f"render_chat expects a list of messages, got {type(messages).__name__}")
    roles = ROLES if has_tools else ROLES[:3]
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatFormatError(f"chat message {index} is a {type(message).__name__}, not a dict")
        role, content = message.get("role"), message.get("content")
        if role not in roles:
            hint = " (this tokenizer has no tool tokens: it was trained before tool use)" if role == "tool" else ""
            raise ChatFormatError(f"chat message {index}: unknown role {role!r}; allowed: {', '.join(roles)}{hint}")
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls:
            if not has_tools:
                raise ChatFormatError(f"chat message {index}: has tool calls, but this tokenizer has no tool "
                                      "tokens (it was trained before tool use)")
            if not isinstance(calls, (list, tuple)):
                raise ChatFormatError(f"chat message {index}: tool_calls must be a list")
            for number, call in enumerate(calls):
                fn = function_of(call) if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    raise ChatFormatError(f"chat message {index}: tool call {number} has no name")
                arguments = fn.get("arguments")
                if arguments is not None and not isinstance(arguments, (str, dict)):
                    raise ChatFormatError(f"chat message {index}: tool call {number}'s arguments must be a JSON "
                                          "object or a string")
            if content is None:
                continue
        if not isinstance(content, str):
            raise ChatFormatError(f"chat message {index}: content is a {type(content).__name__}, not a str")


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False,
           tools: list | None = None) -> tuple[list[int], list[int]]:
    """Ids of a conversation and its loss mask (see the module docstring)."""
    has_tools = tokenizer.tool_call_id is not None
    _check(messages, has_tools)
    if tools and not has_tools:
        raise ChatFormatError("tools were given, but this tokenizer has no tool tokens (it was trained before "
                              "tool use): tools are off for this run")
    # (special id or None, text, learn) pieces; the texts are encoded in one batch call
    pieces: list[tuple[int | None, str, int]] = []
    if tools:
        pieces += [(tokenizer.system_id, "", 0), (None, tools_line(tools), 0), (tokenizer.end_id, "", 0)]
    for message in messages:
        role = message["role"]
        content = message.get("content") or ""
        pieces.append((tokenizer.role_id(role), "", 0))
        if role != "assistant":
            pieces += [(None, content, 0), (tokenizer.end_id, "", 0)]
            continue
        pieces.append((None, content, 1))
        calls = message.get("tool_calls") or []
        for call in calls:
            fn = function_of(call)
            arguments = fn.get("arguments")
            pieces += [(tokenizer.tool_call_id, "", 1), (None, call_text(fn["name"], {} if arguments is None
                                                                           else arguments), 1),
                       (tokenizer.tool_call_end_id, "", 1)]
        if not calls:
            pieces.append((tokenizer.end_id, "", 1))
    if add_generation_prompt:
        pieces.append((tokenizer.assistant_id, "", 0))
    # Content is encoded as plain text, so whatever a user types can never become a control
    # token. One batch call: unlike encode(), it lets go of the GIL while the Rust side
    # works, so the server's event loop runs on meanwhile (api.py).
    texts = [text for special, text, _ in pieces if special is None]
    try:
        encoded = iter(tokenizer.encode_batch(texts))
    except ValueError:
        raise ChatFormatError("a chat message's content is not valid Unicode (it contains a lone surrogate)") \
            from None
    ids, mask = [tokenizer.bos_id], [0]
    for special, _, learn in pieces:
        part = [special] if special is not None else next(encoded)
        ids += part
        mask += [learn] * len(part)
    return ids, mask
