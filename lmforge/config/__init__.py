"""The one typed config tree of lmforge, its YAML presets and `section.key=value` overrides.

    from lmforge.config import load_config
    cfg = load_config("tiny", ["model.n_layer=6", "pretrain.lr=3e-3"])

Every field has a type and, where it matters, an allowed range or set of choices
(`opt(..., lo=, hi=, choices=)`, fields.py). A bad preset, section, field or value raises
ConfigError with one line that names it and says what is allowed; the CLI turns that into
exit code 2. The sections live in data_sections.py, train_sections.py and use_sections.py;
loader.py holds the tree, the loading and the checks across fields; sources.py and
profiles.py parse the source specs and cleaning profiles that `collect.sources` names, so a
bad one stops the run before any work (import them from there: `lmforge.config.sources`).
"""
from ..errors import ConfigError
from .data_sections import CleanConfig, CollectConfig, RunConfig, TokenizerConfig, WorldConfig
from .fields import opt
from .loader import Config, apply_dict, dump_yaml, list_presets, load_config, parse_override, validate
from .train_sections import (DPOConfig, GRPOConfig, ModelConfig, PPOConfig, PreferencesConfig, ReasoningConfig,
                             RewardConfig, SFTConfig, SynthConfig, TRACK_LOGGERS, TrackConfig, TrainConfig)
from .use_sections import BUILTIN_TOOLS, EvalConfig, GenerateConfig, ReportConfig, ServeConfig, ToolsConfig

__all__ = ["BUILTIN_TOOLS", "CleanConfig", "CollectConfig", "Config", "ConfigError", "DPOConfig", "EvalConfig",
           "GRPOConfig", "GenerateConfig", "ModelConfig", "PPOConfig", "PreferencesConfig", "ReasoningConfig",
           "ReportConfig", "RewardConfig", "RunConfig", "SFTConfig", "ServeConfig", "SynthConfig", "TRACK_LOGGERS",
           "TokenizerConfig", "ToolsConfig", "TrackConfig", "TrainConfig", "WorldConfig", "apply_dict", "dump_yaml",
           "list_presets", "load_config", "opt", "parse_override", "validate"]
