"""Tests for lmforge/export.py: the exported folder loads in stock transformers (model, tokenizer,
chat template) with logits equal to ours, `lmforge import` reads it back, and bad folders fail clearly."""
import json

import pytest
import torch

from lmforge.export import ExportError, export_hf, import_hf, max_logit_difference
from lmforge.checkpoints import load_model
from tests.conftest import lmforge
from tests.test_engine import make_run, single_thread  # noqa: F401 - autouse fixture

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("qk_norm", [False, True])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, qk_norm):
    run, tokenizer = make_run(tmp_path / "run", qk_norm=qk_norm, n_kv_head=2)
    out = export_hf(run.model_dir("pretrain"), run.tokenizer_dir, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == ("Qwen3ForCausalLM" if qk_norm else "LlamaForCausalLM")
    ours = load_model(run.model_dir("pretrain"))
    ids = torch.randint(0, tokenizer.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    assert max_logit_difference(ours, hf, ids) < 1e-4

    text = "Hei på deg ☕, 12 + 30"
    assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    rendered = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    assert rendered == tokenizer.render_chat(messages, add_generation_prompt=True)[0]
    assert hf_tokenizer.eos_token == "<|end|>" and hf.generation_config.eos_token_id == tokenizer.end_id
    # tool use through the exported template: tools declared, a call, its result, the answer
    calculator = {"type": "function", "function": {"name": "calculator", "parameters": {
        "type": "object", "properties": {"expression": {"type": "string"}}}}}
    tool_chat = [{"role": "user", "content": "7 + 5?"},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "7 + 5"}}}]},
                 {"role": "tool", "content": "12"}]
    rendered = hf_tokenizer.apply_chat_template(tool_chat, tools=[calculator], add_generation_prompt=True, tokenize=True)
    rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    assert rendered == tokenizer.render_chat(tool_chat, add_generation_prompt=True, tools=[calculator])[0]
    special = json.loads((out / "special_tokens_map.json").read_text())["additional_special_tokens"]
    assert {"<|tool_call|>", "<|tool_call_end|>", "<|tool|>"} <= set(special)

    model, _ = import_hf(out)
    assert model.cfg == ours.cfg
    for (name, a), b in zip(ours.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_cli_export_then_import_round_trip(tmp_path):
    run, tokenizer = make_run(tmp_path / "run")
    one = {"OMP_NUM_THREADS": "1"}
    lmforge("export", "--format", "hf", "--run-dir", str(run.root), "--out", str(tmp_path / "hf"), env_extra=one)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["eos_token_id"] == tokenizer.end_id
    assert "chat_template" in json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    lmforge("import", str(tmp_path / "hf"), "--run-dir", str(tmp_path / "back"), env_extra=one)
    back = load_model(tmp_path / "back" / "models" / "imported")
    ours = load_model(run.model_dir("pretrain"))
    x = torch.randint(0, tokenizer.vocab_size, (1, 20))
    torch.testing.assert_close(back(x), ours(x), atol=0, rtol=0)
    out = lmforge("generate", "Ada", "--run-dir", str(tmp_path / "back"), "--max-new-tokens", "4",
                  "--temperature", "0", env_extra=one)
    assert out.stdout.startswith("Ada")


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(ExportError, match="config.json: missing"):
        import_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ExportError, match="gpt2"):
        import_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32,
                                                      "num_attention_heads": 4, "num_hidden_layers": 1,
                                                      "intermediate_size": 64, "vocab_size": 10}))
    with pytest.raises(ExportError, match="safetensors"):
        import_hf(tmp_path)
