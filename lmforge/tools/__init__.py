"""Tool use: tools the model calls mid-answer, and the one loop that runs them.

    calculator.py  exact decimal arithmetic through a small parser (never eval)
    lookup.py      BM25 search over the cleaned corpus, the world's reference shelf and your documents;
                   the `index` stage that builds it
    registry.py    Tool, the built-in and your own tools (module:function), the ToolBox that runs them
    session.py     one sequence's side of the tool loop, driven by the engine (lmforge/generate.py)

The call format is lmforge/chat_format.py's. See docs/ARCHITECTURE.md ("Tool use").
"""
