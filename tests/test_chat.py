"""Tests for lmforge/chat.py: multi-turn history through the chat template, settings commands,
seeds, Ctrl-C stopping an answer but not the program, and the real `lmforge chat` command."""
import dataclasses
import os
import subprocess
import sys

import pytest

from lmforge.chat import ChatSession, chat_loop
from lmforge.engine import generate
from tests.conftest import ROOT
from tests.test_engine import make_model, make_run, make_tokenizer, single_thread  # noqa: F401 - autouse fixture


def chat_cli(*args, input_text: str, cwd) -> subprocess.CompletedProcess:
    """`lmforge chat` in a subprocess with its standard input fed from a string."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "lmforge", "chat", *args], input=input_text, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def session(**kwargs):
    tokenizer = make_tokenizer()
    return ChatSession(make_model(vocab=tokenizer.vocab_size, seq_len=128), tokenizer, **kwargs)


def test_reply_uses_the_chat_template_and_keeps_history():
    s = session(system="Be brief.", temperature=0.0, max_tokens=12)
    t = s.tokenizer
    answer, reason = s.reply("Hei!", write=lambda text: None)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hei!"}]
    ids = t.render_chat(messages, add_generation_prompt=True)[0]
    want = generate(s.model, [ids], max_new_tokens=12, tokenizer=t,
                    stop_ids=(t.end_id, t.bos_id, t.user_id, t.system_id, t.assistant_id, t.tool_id,
                              t.tool_call_id))[0]
    assert answer == want.text and reason in ("stop", "length")
    s.reply("And then?", write=lambda text: None)
    assert [m["role"] for m in s.messages] == ["user", "assistant", "user", "assistant"]
    full = t.render_chat([{"role": "system", "content": "Be brief."}] + s.messages, add_generation_prompt=True)[0]
    assert s.prompt_ids() == full


@pytest.mark.parametrize("use_draft", [True, False])
def test_speculative_chat_gives_the_same_answers(use_draft):
    plain = session(temperature=0.0, max_tokens=16)
    draft = make_model(5, vocab=plain.tokenizer.vocab_size, seq_len=128, n_layer=1) if use_draft else None
    fast = ChatSession(plain.model, plain.tokenizer, temperature=0.0, max_tokens=16,
                       speculate={"draft": draft} if use_draft else {})
    for turn in ("Hello there", "Hello there, tell me more"):
        assert fast.reply(turn, write=lambda text: None) == plain.reply(turn, write=lambda text: None)
    assert fast.speculative_stats.rounds > 0
    assert ("draft model" if use_draft else "prompt lookup") in fast.command("/settings")
    assert "speculative" not in plain.command("/settings")


def test_commands_and_seed():
    s = session()
    assert s.command("/temperature 1.2") == "(temperature = 1.2)" and s.settings["temperature"] == 1.2
    assert "between" in s.command("/top_p 2")
    assert s.command("/top_p 0.9") and s.settings["top_p"] == 0.9
    assert s.command("/seed 42") and s.settings["seed"] == 42
    assert "unknown" in s.command("/frobnicate")
    assert s.command("/system Talk like a pirate.") and s.system == "Talk like a pirate."
    a, _ = s.reply("Hi", write=lambda text: None)
    s.command("/clear")
    assert s.messages == []
    b, _ = s.reply("Hi", write=lambda text: None)
    assert a == b   # same seed, same history: the same answer
    assert s.command("/exit") is None


def test_ctrl_c_stops_the_answer_not_the_program():
    s = session(temperature=1.0, max_tokens=100, seed=3)
    # no stop ids: the random model must not end its answer before the user interrupts it
    s.params = lambda: dataclasses.replace(ChatSession.params(s), stop_ids=())
    written = []

    def write(text):
        written.append(text)
        if text:    # the user presses Ctrl-C while the answer streams
            raise KeyboardInterrupt

    lines = iter(["Hello", "/settings", "Again"])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None
    calls = {"n": 0}
    real_reply = s.reply

    def reply(text, out):
        calls["n"] += 1
        return real_reply(text, write if calls["n"] == 1 else out)
    s.reply = reply
    shown = []
    assert chat_loop(s, read=read, write=shown.append) == 0
    assert "  [stopped]\n" in shown
    assert calls["n"] == 2 and len(s.messages) == 4     # the program went on to the next question
    assert s.messages[1]["content"] == written[0]       # the stopped answer keeps what was shown


def test_ctrl_c_at_the_prompt_is_a_hint():
    s = session()
    events = iter([KeyboardInterrupt, "/exit"])

    def read(prompt):
        item = next(events)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        return item
    shown = []
    assert chat_loop(s, read=read, write=shown.append) == 0
    assert any("Ctrl-D" in line for line in shown[1:])


def test_chat_command_line(tmp_path):
    run, _ = make_run(tmp_path / "run", stages=("pretrain",))
    out = chat_cli("--run-dir", str(run.root), "--temperature", "0", "--max-new-tokens", "8",
                   "--system", "Be brief.", cwd=tmp_path, input_text="/top_p 0.5\nHello\n/clear\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert "(top_p = 0.5)" in out.stdout and "assistant> " in out.stdout and "(history cleared)" in out.stdout


def test_chat_command_line_with_a_draft_run(tmp_path):
    run, _ = make_run(tmp_path / "run", stages=("pretrain",))
    draft, _ = make_run(tmp_path / "draft", stages=("pretrain",), n_layer=1)
    out = chat_cli("--run-dir", str(run.root), "--temperature", "0", "--max-new-tokens", "8", "--draft",
                   str(draft.root), cwd=tmp_path, input_text="Hello\n/settings\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert "assistant> " in out.stdout and "speculative=draft model (acceptance" in out.stdout
    out = chat_cli("--run-dir", str(run.root), "--draft", str(draft.root), "--prompt-lookup", cwd=tmp_path,
                   input_text="")
    assert out.returncode == 1 and "choose one" in out.stderr


def test_chat_without_a_model_is_one_clear_line(tmp_path):
    out = chat_cli("--run-dir", str(tmp_path / "empty"), cwd=tmp_path, input_text="")
    assert out.returncode == 1 and "no trained model" in out.stderr


def test_tool_calls_are_shown_and_kept_in_the_history():
    from lmforge.tools.registry import ToolBox, load_tools
    from tests.scripted import ScriptModel
    tokenizer = make_tokenizer()
    box = ToolBox(load_tools(["calculator"]))
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "7 + 5"}}}
    conversation = [{"role": "user", "content": "7 and 5?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                    {"role": "tool", "content": "12"}, {"role": "assistant", "content": "7 + 5 = 12."},
                    {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You are welcome."}]
    model = ScriptModel(tokenizer, [tokenizer.render_chat(conversation, tools=box.schemas())[0]])
    s = ChatSession(model, tokenizer, temperature=0.0, max_tokens=80, tools=box)
    shown = []
    answer, reason = s.reply("7 and 5?", write=shown.append)
    assert (answer, reason) == ("7 + 5 = 12.", "stop")
    assert "".join(shown) == '[calculator {"expression": "7 + 5"} -> 12] 7 + 5 = 12.'
    assert [m["role"] for m in s.messages] == ["user", "assistant", "tool", "assistant"]
    # the next turn's prompt holds the call and its result: the script goes on from there
    assert s.reply("Thanks!", write=lambda text: None) == ("You are welcome.", "stop")
    assert "tools=calculator" in s.command("/settings")
    assert s.command("/tools off") == "(tools off: calculator)" and "tools=off" in s.command("/settings")
    box.close()


def test_asking_for_tools_on_a_run_from_before_tool_use_is_one_line(tmp_path):
    from lmforge.config import TokenizerConfig
    from lmforge.checkpoints import save_model
    from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer
    from tests.test_engine import TEXTS
    run, _ = make_run(tmp_path / "run", stages=("pretrain",))
    old = Tokenizer.train(TEXTS, TokenizerConfig(vocab_size=300, min_frequency=2), special_tokens=SPECIAL_TOKENS)
    old.save(run.tokenizer_dir, model_max_length=64)
    save_model(make_model(vocab=old.vocab_size, seq_len=64), run.model_dir("pretrain"))
    out = chat_cli("--run-dir", str(run.root), "--temperature", "0", "--max-new-tokens", "4", "--tools", "calculator",
                   cwd=tmp_path, input_text="Hello\n/tools\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ("--tools: this run's tokenizer has no tool tokens (it was trained before tool "
                                  "use); tools are off")
    assert "assistant> " in out.stdout and "(no tools:" in out.stdout
