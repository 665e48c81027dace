"""Tests for lmforge/inspect.py and lmforge/evals/inside.py: compare across stages, embedding
neighbours and map, divergence, and the commands `lmforge compare` / `lmforge neighbours`."""
import torch

from lmforge.evals.inside import divergence, embedding_map, report_section, spread
from lmforge.inspect import compare, neighbours
from tests.conftest import lmforge
from tests.test_engine import make_model, make_run, make_tokenizer, single_thread  # noqa: F401 - autouse fixture


def test_compare_lists_random_init_and_every_stage(tmp_path):
    run, tokenizer = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    rows = compare(run, "Who was Ada Berg?", max_new_tokens=6)
    assert [r["stage"] for r in rows] == ["random init", "pretrain", "sft"]
    assert [r["format"] for r in rows] == ["text", "text", "chat"]
    assert rows[0] == compare(run, "Who was Ada Berg?", max_new_tokens=6)[0]     # random init is seeded
    out = lmforge("compare", "Who was Ada Berg?", "--run-dir", str(run.root), "--max-new-tokens", "5",
                  env_extra={"OMP_NUM_THREADS": "1"})
    assert "random init" in out.stdout and "sft" in out.stdout and "[chat," in out.stdout


def test_compare_offers_tools_to_the_chat_stages(tmp_path, monkeypatch):
    """A chat stage that calls the calculator has its call run and shown; base models get no tools.
    The sft stage's model is one that writes a given conversation (tests/scripted.py)."""
    import lmforge.inspect
    from lmforge.tools.registry import ToolBox, load_tools
    from tests.scripted import ScriptModel
    run, tokenizer = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    box = ToolBox(load_tools(["calculator"]))
    question = "What is 7 + 5?"
    chat = [{"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "7 + 5"}}}]},
            {"role": "tool", "content": "12"}, {"role": "assistant", "content": "It is 12."}]
    scripted = ScriptModel(tokenizer, [tokenizer.render_chat(chat, tools=box.schemas())[0]], seq_len=64)
    real_load = lmforge.inspect.load_model
    monkeypatch.setattr(lmforge.inspect, "load_model",
                        lambda path: scripted if path == run.model_dir("sft") else real_load(path))
    rows = {r["stage"]: r for r in compare(run, question, max_new_tokens=40, tools=box)}
    assert rows["sft"]["text"] == "It is 12." and rows["sft"]["tool_calls"][0]["result"] == "12"
    assert rows["pretrain"]["tool_calls"] == [] and rows["pretrain"]["format"] == "text"
    box.close()


def test_neighbours_finds_a_planted_twin(tmp_path):
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size)
    # a word the BPE learned as one token (with few merges, the tool format's strings take many)
    text = next(w for w in ("the", "The", "and", "is", "a") if len(tokenizer.encode(w)) == 1)
    word = tokenizer.encode(text)
    twin = [200]
    assert word[0] != twin[0]
    with torch.no_grad():
        model.embed.weight[twin[0]] = model.embed.weight[word[0]] * 2    # same direction
    pieces, nearest = neighbours(model, tokenizer, text, 5)
    assert pieces == [tokenizer.id_to_token(word[0])]
    assert nearest[0][0] == tokenizer.id_to_token(twin[0]) and abs(nearest[0][1] - 1.0) < 1e-5
    assert embedding_map(model, tokenizer, tmp_path / "map.png") and (tmp_path / "map.png").stat().st_size > 1000


def test_divergence_grows_with_temperature():
    assert spread([[1, 2], [1, 2]]) == (0.5, 0.0)
    assert spread([[1], [2]]) == (1.0, 1.0)
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size)
    rows = divergence(model, tokenizer, [tokenizer.bos_id], temperatures=(0.0, 1.5), samples=8, max_new_tokens=10)
    assert rows[0]["distinct"] == 1 / 8 and rows[0]["mean_distance"] == 0.0
    assert rows[1]["distinct"] > rows[0]["distinct"] and rows[1]["mean_distance"] > 0


def test_report_section_and_neighbours_command(tmp_path):
    run, _ = make_run(tmp_path / "run")
    text = report_section(run, __import__("lmforge.config", fromlist=["load_config"]).load_config("micro"))
    assert "embeddings.png" in text and "| 1.5 |" in text
    assert (run.report_dir / "embeddings.png").exists()
    out = lmforge("neighbours", "Berg", "--run-dir", str(run.root), "-k", "4", env_extra={"OMP_NUM_THREADS": "1"})
    assert "nearest tokens to 'Berg'" in out.stdout and len(out.stdout.strip().splitlines()) == 5
