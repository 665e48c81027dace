"""Typed config fields: `opt(...)` declares one with its range or choices; `set_field` checks and sets one.

    from lmforge.config.fields import opt, set_field
    seed: int = opt(7, lo=0)
    set_field(cfg.world, "seed", "8", "world.seed")     # coerced to 8, or a one-line ConfigError
"""
from __future__ import annotations

import dataclasses
import typing

from ..errors import ConfigError


def opt(default, lo=None, hi=None, choices=None, help=""):
    """A config field with its allowed range (inclusive) or allowed choices."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _coerce(value, typ, where: str):
    """Turn a YAML/CLI value into the field's type, or raise a one-line ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            try:
                as_float = float(str(value))
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if typ is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list (a,b,c), got {value!r}")
        return value
    return value


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def set_field(section_obj, key: str, value, where: str):
    types_ = _field_types(type(section_obj))
    if key not in types_:
        allowed = ", ".join(sorted(types_))
        raise ConfigError(f"unknown field {where!r}; fields of this section: {allowed}")
    typ, fld = types_[key]
    value = _coerce(value, typ, where)
    meta = fld.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{where}={value!r} is not allowed; choose one of {meta['choices']}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{where}={value!r} is out of range; allowed {rng}")
    setattr(section_obj, key, value)
