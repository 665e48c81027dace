"""Tests for tool use: the calculator, the registry and ToolBox, the lookup index, and the one tool
loop run by the real engine (lmforge/tools/, lmforge/engine/) with a scripted model.

    python -m pytest tests/test_tools.py -q
"""
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.engine import Engine, generate, SamplingParams, Sequence, stream
from lmforge.tools.calculator import MAX_CHARS, calculate
from lmforge.tools.lookup import LookupIndex, passages_of
from lmforge.tools.registry import ToolBox, ToolError, load_tools, resolve_tool, tool_from_callable
from lmforge.engine import ToolSession
from tests.scripted import ScriptModel
from tests.test_engine import make_tokenizer, single_thread  # noqa: F401 - autouse fixture


# ---------------------------------------------------------------- the calculator

@pytest.mark.parametrize("expression, value", [
    ("7 + 5", "12"), ("12 - 3", "9"), ("3 × 4", "12"), ("3 x 4", "12"), ("3*4", "12"), ("10 ÷ 4", "2.5"),
    ("10/3", "3.3333333333"), ("(2,5 + 1) * 4", "14"), ("0.1 + 0.2", "0.3"), ("2 ** 10", "1024"), ("2^3^2", "512"),
    ("-(-3)", "3"), ("2 ** -2", "0.25"), ("  40 - 38 ", "2"), ("1,5", "1.5"), ("7 − 2", "5"),
])
def test_calculator_computes(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize("expression, reason", [
    ("__import__('os').system('ls')", "names are not allowed"),
    ("a.b", "names are not allowed"),
    ("(1).__class__", "unexpected character"),
    ("abs(-3)", "names are not allowed"),
    ("9**9**9", "too large"),
    ("10 ** 40", "digits; the limit is 30"),
    ("99999999999999999999 + 1", "more than 15 digits"),
    ("1" + " + 1" * 100, f"longer than {MAX_CHARS} characters"),
    ("(" * 30 + "1" + ")" * 30, "nested"),
    ("1 / 0", "division by zero"), ("0 ** -1", "division by zero"),
    ("2 ** 0.5", "whole-number exponents"), ("", "empty"), ("5 -", "ends too early"), ("(1 + 2", "not closed"),
    ("1 2", "unexpected '2'"), ("'7'", "unexpected character"), ("1.2.3", "not a number"),
])
def test_calculator_refuses_with_an_error_result(expression, reason):
    result = calculate(expression)
    assert result.startswith("error: ") and reason in result


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/×÷^().,x eE_a ", max_size=60))
def test_calculator_never_raises(text):
    result = calculate(text)
    assert isinstance(result, str) and result and "\n" not in result


# ---------------------------------------------------------------- registry and ToolBox

def weather(city: str, unit: str = "C") -> str:
    """Today's weather in a city."""
    return f"{city}: 21 {unit}"


def broken(x: str = "") -> str:
    raise RuntimeError("the tool broke")


def slow(seconds: str = "0.3") -> str:
    time.sleep(float(seconds))
    return "slept"


def test_user_tools_are_plain_callables():
    tool = resolve_tool("tests.test_tools:weather")
    assert tool.name == "weather" and tool.description == "Today's weather in a city."
    assert tool.schema()["function"]["parameters"] == {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}
    box = ToolBox([tool, *load_tools(["calculator"])], timeout_s=2)
    assert box.run("weather", {"city": "Oslo"}).text == "Oslo: 21 C"
    assert box.run("calculator", {"expression": "6 × 7"}).text == "42"
    result = box.run("weather", {"town": "Oslo"})            # wrong arguments: an error the model reads
    assert result.error and result.text.startswith("error: TypeError")
    assert box.run("nothing", {}).text.startswith("error: unknown tool 'nothing'")
    box.close()


def test_a_tool_that_raises_or_hangs_gives_an_error_result():
    box = ToolBox([tool_from_callable(broken), tool_from_callable(slow)], timeout_s=0.2)
    assert box.run("broken", {}).text == "error: RuntimeError: the tool broke"
    result = box.run("slow", {"seconds": "5"})
    assert result.error and "did not answer within 0.2 s" in result.text
    assert box.stats["timeouts"] == 1 and box.stats["errors"] == 2
    box.close()


@pytest.mark.parametrize("spec, match", [("nope", "unknown tool 'nope'"), ("tests.test_tools:absent", "cannot be loaded"),
                                         ("lookup", "needs a run's index")])
def test_bad_tool_specs_are_one_line_errors(spec, match):
    with pytest.raises(ToolError, match=match) as info:
        resolve_tool(spec)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- lookup

def test_lookup_ranks_and_shows_scores(tmp_path):
    passages = ["Ada Berg: was born in 1820; came from Torvik; worked as a baker.",
                "Ada Lund: was born in 1790; came from Dalby.", "Torvik lies in Norvania.",
                "The river Alva flows into the Grey Sea."] + [f"Filler line {i} about nothing." for i in range(50)]
    index = LookupIndex.build(passages, k=2, chars=40)
    hits = index.search("When was Ada Berg born?")
    assert hits[0][1].startswith("Ada Berg:") and hits[0][0] > hits[1][0] > 0
    text = index("When was Ada Berg born?")
    assert text.splitlines()[0].startswith("[1] score ") and text.splitlines()[0].endswith("…")
    assert index("zebra xylophone") == "no results for 'zebra xylophone'"
    assert index("") == "no results for ''"
    index.save(tmp_path / "ix")
    loaded = LookupIndex.load(tmp_path / "ix", k=2, chars=40)
    assert loaded("When was Ada Berg born?") == text
    with pytest.raises(FileNotFoundError, match="lmforge index"):
        LookupIndex.load(tmp_path / "missing")


def test_passages_are_lines_and_long_lines_are_cut():
    text = "Short line.\n\n" + " ".join(f"Sentence number {i} is here." for i in range(40))
    pieces = passages_of(text, max_chars=100)
    assert pieces[0] == "Short line." and all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces[1:]) == " ".join(text.split("\n\n")[1].split())


# ---------------------------------------------------------------- the tool loop in the engine

@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def calc_call(expression):
    return {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}


def worked(question, steps, answer, name="calculator"):
    """A conversation whose assistant calls `name` once per (arguments, result) in steps."""
    messages, text = [{"role": "user", "content": question}], ""
    for arguments, result, said in steps:
        call = {"type": "function", "function": {"name": name, "arguments": arguments}}
        messages += [{"role": "assistant", "content": text, "tool_calls": [call]}, {"role": "tool", "content": result}]
        text = said
    return messages + [{"role": "assistant", "content": text + answer}]


def scripted(tok, conversations, tools, seq_len=256):
    scripts = [tok.render_chat(c, tools=tools)[0] for c in conversations]
    prompts = [tok.render_chat(c[:1], add_generation_prompt=True, tools=tools)[0] for c in conversations]
    return ScriptModel(tok, scripts, seq_len), scripts, prompts


def test_tool_loop_runs_calls_and_the_answer_renders_back_to_the_same_tokens(tok):
    box = ToolBox(load_tools(["calculator"]))
    conversations = [
        worked("Ada has 7 apples and buys 5. Then she gives away 3.",
               [({"expression": "7 + 5"}, "12", "7 + 5 = 12. "), ({"expression": "12 - 3"}, "9", "12 - 3 = 9. ")],
               "The answer is 9."),
        worked("Tor has 3 boxes of 4.", [({"expression": "3 × 4"}, "12", "3 × 4 = 12. ")], "The answer is 12."),
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, no tools needed."}],
    ]
    model, scripts, prompts = scripted(tok, conversations, box.schemas())
    outs = generate(model, prompts, max_new_tokens=150, tokenizer=tok, tools=box, stop_ids=(tok.end_id,))
    assert [o.text for o in outs] == ["7 + 5 = 12. 12 - 3 = 9. The answer is 9.", "3 × 4 = 12. The answer is 12.",
                                      "Hello, no tools needed."]
    for prompt, out, script, conversation in zip(prompts, outs, scripts, conversations):
        assert out.finish_reason == "stop"
        assert prompt + out.tokens + [tok.end_id] == script        # every injected token was the script's
        # injected = exactly the tool turns: <|tool|> result <|end|> <|assistant|>
        ids, mask = tok.render_chat(conversation, tools=box.schemas())
        context = [1 - m for m in mask[len(prompt):-1]]
        role = [i for i in ids[len(prompt):-1]]
        assert out.injected == [int(c and r not in (tok.tool_call_id, tok.tool_call_end_id)) for c, r in
                                zip(context, role)]
        # the answer as messages renders back to the very tokens the engine produced
        assert tok.render_chat(conversation[:1] + out.messages, tools=box.schemas())[0] == script
    assert [r["result"] for r in outs[0].tool_calls] == ["12", "9"] and not outs[2].tool_calls
    box.close()


def test_a_row_waiting_on_a_slow_tool_does_not_stall_the_others(tok):
    gate = threading.Event()

    def gated(door: str = "") -> str:
        gate.wait(20)
        return "opened"
    box = ToolBox([tool_from_callable(gated), *load_tools(["calculator"])], timeout_s=30, wait_s=0.0)
    waiting = worked("Open the door.", [({"door": "front"}, "opened", "")], "The door is open.", name="gated")
    busy = [worked(f"Sum {i}?", [({"expression": f"{i} + 1"}, str(i + 1), f"{i} + 1 = {i + 1}. ")],
                   f"The answer is {i + 1}. " + "More words to say. " * 4) for i in range(3)]
    model, scripts, prompts = scripted(tok, [waiting] + busy, box.schemas())
    engine = Engine(model, max_batch=4)
    params = SamplingParams(max_tokens=150, stop_ids=(tok.end_id,))
    seqs = [engine.submit(Sequence(p, params, tok, tools=ToolSession(box, tok))) for p in prompts]
    steps = 0
    while not all(seq.done for seq in seqs[1:]):     # the door stays shut all this time
        assert engine.step() and steps < 2000
        steps += 1
    assert not seqs[0].done and engine.parked == [seqs[0]] and seqs[0].tools.pending is not None
    gate.set()
    while engine.step():
        pass
    assert [prompt + seq.tokens + [tok.end_id] for prompt, seq in zip(prompts, seqs)] == scripts
    assert seqs[0].result().text == "The door is open." and seqs[0].result().tool_calls[0]["result"] == "opened"
    box.close()


def test_timeouts_malformed_unknown_and_too_many_calls_give_results_the_model_reads(tok):
    box = ToolBox([tool_from_callable(slow), *load_tools(["calculator"])], timeout_s=0.2, max_calls=2, wait_s=0.01)
    timeout = "error: slow did not answer within 0.2 s"
    conversations = [
        worked("Sleep long.", [({"seconds": "3"}, timeout, "")], "It timed out."),
        worked("Broken?", [('{"expression": "7 +', "error: the arguments of calculator are not JSON "
                            "(Unterminated string starting at)", "")], "Sorry."),
        worked("Other?", [({"q": "x"}, "error: unknown tool 'search'; tools: calculator, slow", "")], "No such tool.",
               name="search"),
        worked("Many?", [({"expression": "1 + 1"}, "2", ""), ({"expression": "2 + 1"}, "3", ""),
                         ({"expression": "3 + 1"}, "error: no more tool calls (the limit is 2); answer with what "
                                                   "you have", "")], "4."),
    ]
    conversations[0][1]["tool_calls"][0]["function"]["name"] = "slow"
    model, scripts, prompts = scripted(tok, conversations, box.schemas())
    outs = generate(model, prompts, max_new_tokens=200, tokenizer=tok, tools=box, stop_ids=(tok.end_id,))
    assert [prompt + o.tokens + [tok.end_id] for prompt, o in zip(prompts, outs)] == scripts
    assert [o.text for o in outs] == ["It timed out.", "Sorry.", "No such tool.", "4."]
    assert outs[1].tool_calls[0]["malformed"] and outs[2].tool_calls[0]["malformed"]
    assert not outs[0].tool_calls[0]["malformed"] and outs[0].tool_calls[0]["error"]
    assert [r["error"] for r in outs[3].tool_calls] == [False, False, True]
    box.close()


def test_client_tools_and_finish_on_malformed_end_the_sequence(tok):
    box = ToolBox(load_tools(["calculator"]))
    schemas = box.schemas() + [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    conversations = [worked("Weather in Oslo?", [({"city": "Oslo"}, "sunny", "")], "Sunny.", name="weather"),
                     worked("Broken?", [('{"expression": ', "x", "")], "x")]
    model, scripts, prompts = scripted(tok, conversations, schemas)
    params = SamplingParams(max_tokens=100, stop_ids=(tok.end_id,))
    results = []
    for prompt in prompts:
        session = ToolSession(box, tok, client_tools={"weather"}, malformed="finish")
        results.append(list(stream(model, tok, prompt, params, tools=session)))
        assert session.records and session.pending is None
    call_events = [e.tool for e in results[0] if e.tool]
    assert call_events == [{"type": "call", "id": call_events[0]["id"], "name": "weather",
                            "arguments": '{"city": "Oslo"}', "malformed": False}]
    assert results[0][-1].finish_reason == "tool_calls"
    assert results[1][-1].finish_reason == "invalid_tool_call"
    box.close()


def test_stream_reports_calls_and_results(tok):
    box = ToolBox(load_tools(["calculator"]))
    conversation = worked("7 and 5?", [({"expression": "7 + 5"}, "12", "7 + 5 = 12. ")], "The answer is 12.")
    model, scripts, prompts = scripted(tok, [conversation], box.schemas())
    events = list(stream(model, tok, prompts[0], SamplingParams(max_tokens=100, stop_ids=(tok.end_id,)), tools=box))
    tools = [e.tool for e in events if e.tool]
    assert [t["type"] for t in tools] == ["call", "result"] and tools[1]["content"] == "12"
    assert "".join(e.text for e in events) == "7 + 5 = 12. The answer is 12."
    assert events[-1].finish_reason == "stop"
    box.close()


def test_a_tokenizer_without_tool_tokens_has_tools_off():
    from lmforge.config import TokenizerConfig
    from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer
    from tests.test_engine import TEXTS
    old = Tokenizer.train(TEXTS, TokenizerConfig(vocab_size=300), special_tokens=SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="no tool tokens"):
        ToolSession(ToolBox(load_tools(["calculator"])), old)


def test_the_index_takes_your_own_documents(micro_copy, tmp_path):
    from tests.conftest import lmforge
    from lmforge.rundir import RunDir
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "zoo.md").write_text("The zebracorn lives in the Glimmer Hills.\n\nIt eats moonberries.\n")
    (notes / "image.png").write_bytes(b"\x89PNG....")                       # unreadable: counted, not fatal
    lmforge("index", "--run-dir", str(micro_copy), f"tools.lookup_sources=[folder:{notes}]")
    run = RunDir(micro_copy)
    metrics = run.read_manifest("index")["metrics"]
    assert metrics["by_source"]["yours"] == 2 and metrics["by_source"]["unreadable:unsupported_type"] == 1
    hits = LookupIndex.load(run).search("Where does the zebracorn live?")
    assert hits[0][1] == "The zebracorn lives in the Glimmer Hills."
    bad = lmforge("index", "--run-dir", str(micro_copy), "tools.lookup_sources=[site]", check=False)
    assert bad.returncode == 2 and "tools.lookup_sources" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
