"""Plug-ins named as "package.module:function": GRPO rewards and tools of your own.

    from lmforge.plugins import import_callable
    fn = import_callable("my_pkg.rewards:short_answers", "reward")

One loader for every place a config names Python code, so a bad name reads the same
everywhere: ValueError with one line that says what could not be loaded and why.
"""
from __future__ import annotations

import importlib
from typing import Callable


def import_callable(spec: str, kind: str) -> Callable:
    """The callable `spec` ("module:function") names; ValueError with one line otherwise."""
    module_name, _, func_name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{kind} {spec!r} cannot be loaded ({type(err).__name__}: {err})") from None
    if not callable(func):
        raise ValueError(f"{kind} {spec!r} is not callable")
    return func
