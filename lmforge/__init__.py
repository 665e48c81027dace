"""lmforge: from raw text to a chat model, every stage real, on a laptop CPU or a GPU cluster.

Start with `lmforge run` (see README.md); the stages are listed in lmforge/run.py.
"""
__version__ = "0.1.0"
