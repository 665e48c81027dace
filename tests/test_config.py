"""The config tree: presets, overrides, and one-line errors with exit code 2."""
import pytest

from lmforge.config import ConfigError, list_presets, load_config

from .conftest import lmforge


def test_presets_load_and_differ():
    assert {"micro", "tiny", "gpt2-124m"} <= set(list_presets())
    micro, tiny, gpt2 = (load_config(p) for p in ("micro", "tiny", "gpt2-124m"))
    assert micro.model.d_model < tiny.model.d_model < gpt2.model.d_model
    assert gpt2.model.seq_len == 1024 and gpt2.model.n_layer == 12
    assert tiny.run.name == "tiny"


def test_overrides_are_typed():
    cfg = load_config("micro", ["model.n_layer=3", "pretrain.lr=1e-3", "model.qk_norm=true",
                                "world.languages=en"])
    assert cfg.model.n_layer == 3 and isinstance(cfg.model.n_layer, int)
    assert cfg.pretrain.lr == pytest.approx(1e-3)
    assert cfg.model.qk_norm is True
    assert cfg.world.languages == ["en"]


@pytest.mark.parametrize("override, words", [
    ("model.n_layer=0", ["model.n_layer", "range"]),
    ("model.n_layer=two", ["model.n_layer", "integer"]),
    ("model.colour=red", ["model.colour", "fields"]),
    ("modle.n_layer=2", ["modle", "sections"]),
    ("pretrain.optimizer=sgd", ["pretrain.optimizer", "adamw"]),
    ("model.d_model=99", ["d_model", "n_head"]),
    ("n_layer=2", ["section.key=value"]),
    ("grpo.tools=[abacus]", ["grpo.tools", "unknown tool 'abacus'", "calculator, lookup"]),
    ("serve.builtin_tools=[calc]", ["serve.builtin_tools", "unknown tool 'calc'"]),
    ("tools.lookup_sources=[site]", ["tools.lookup_sources", "folder:"]),
    ("tools.lookup_sources=[hello]", ["tools.lookup_sources[0]", "unknown source kind"]),
    ("tools.timeout_s=0", ["tools.timeout_s", "range"]),
    ("synth.tool_use=maybe", ["synth.tool_use", "calls"]),
])
def test_bad_values_name_the_field(override, words):
    with pytest.raises(ConfigError) as err:
        load_config("micro", [override])
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    for args in (["--preset", "nosuch"], ["--preset", "micro", "model.n_head=-1"]):
        proc = lmforge("run", "--run-dir", str(tmp_path / "r"), *args, check=False)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lmforge: config error:")
    assert not (tmp_path / "r" / "stages").exists()


def test_the_old_label_section_still_loads_with_a_one_line_note(tmp_path, capsys):
    import yaml

    from lmforge.rundir import RunDir
    new = load_config("micro", ["preferences.prompts=7"])
    old = load_config("micro", ["label.prompts=7"])
    note = capsys.readouterr().err.strip().splitlines()
    assert old.preferences.prompts == 7 and len(note) == 1 and "'label' section is now called 'preferences'" in note[0]
    # the stage's fingerprint hashes the section under its old name: runs made before the rename stay up to date
    assert old.section_hash("preferences", "world.languages") == new.section_hash("preferences", "world.languages")
    # a run folder written before the rename (its config.yaml says `label:`) loads, quietly
    saved = new.to_dict()
    saved["label"] = saved.pop("preferences")
    run = RunDir(tmp_path / "old")
    run.root.mkdir()
    run.config_path.write_text(yaml.safe_dump(saved))
    assert run.load_config().preferences.prompts == 7 and capsys.readouterr().err == ""


def test_options_added_later_leave_fingerprints_alone_at_their_default():
    """tokenizer.train_chars, grpo.tasks, grpo.lookup_values, grpo.seed, synth.lookup_entities and
    tools.lookup_practice_mix came after runs existed: at their "as before" value the section hashes
    as it did without them (so no stage goes out of date); set otherwise, they count."""
    import hashlib
    import json
    from lmforge.config.loader import ADDED_LATER
    # every such field at its "as before" value (tools.lookup_practice_mix's default for new runs is another)
    cfg = load_config("micro", [f"{head}.{key}={value}" for head, fields in ADDED_LATER.items()
                                for key, value in fields.items()])
    later = {"tokenizer": {"train_chars"}, "grpo": {"tasks", "lookup_values", "seed"}, "synth": {"lookup_entities"},
             "tools": {"lookup_practice_mix"}}
    assert later == {head: set(fields) for head, fields in ADDED_LATER.items()}
    for section, fields in later.items():
        before = {section: {k: v for k, v in cfg.to_dict()[section].items() if k not in fields}}
        old = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
        assert cfg.section_hash(section) == old
    for override in ("tokenizer.train_chars=1000", "grpo.tasks=lookup", "grpo.lookup_values=number", "grpo.seed=2",
                     "synth.lookup_entities=5", "tools.lookup_practice_mix=world"):
        section = override.split(".")[0]
        changed = load_config("micro", [f"{head}.{key}={value}" for head, fields in ADDED_LATER.items()
                                        for key, value in fields.items()] + [override])
        assert changed.section_hash(section) != cfg.section_hash(section), override
    # one field hashed alone (the index stage hashes tools.lookup_practice_mix, not the whole tools section)
    assert cfg.section_hash("tools.lookup_practice", "tools.lookup_practice_mix") == cfg.section_hash("tools.lookup_practice")
    changed = load_config("micro")          # new runs: the world's mix
    assert changed.tools.lookup_practice_mix == "world"
    assert changed.section_hash("tools.lookup_practice", "tools.lookup_practice_mix") != cfg.section_hash("tools.lookup_practice")
    assert changed.section_hash("tools") != cfg.section_hash("tools")
    # a GRPO seed of its own ages the GRPO stage only; run.seed is in every stage's hash
    assert load_config("micro", ["grpo.seed=2"]).section_hash("run.seed") == cfg.section_hash("run.seed")


def test_a_run_saved_before_a_field_existed_keeps_the_old_behaviour(tmp_path):
    """A saved config.yaml without a field added later loads with the field's "as before" value
    (tools.lookup_practice_mix: names), while a new run gets the new default (world); a saved
    value is kept."""
    import yaml
    cfg = load_config("micro")
    assert cfg.tools.lookup_practice_mix == "world"
    data = cfg.to_dict()
    del data["tools"]["lookup_practice_mix"]
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    assert load_config(base=old).tools.lookup_practice_mix == "names"
    assert load_config(base=old, overrides=["tools.lookup_practice_mix=world"]).tools.lookup_practice_mix == "world"
    data["tools"]["lookup_practice_mix"] = "world"
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(data))
    assert load_config(base=new).tools.lookup_practice_mix == "world"
