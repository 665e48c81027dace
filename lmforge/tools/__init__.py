"""Tool use: the tools the model calls mid-answer, and the ToolBox that runs them.

    calculator.py  exact decimal arithmetic through a small parser (never eval)
    lookup.py      BM25 search over the cleaned corpus, the world's reference shelf and your documents;
                   the `index` stage that builds it
    registry.py    Tool, the built-in and your own tools (module:function), the ToolBox that runs them

The one tool loop that finds a call in the generated tokens, runs it and appends its result
is the engine's: lmforge/engine/tool_loop.py (ToolSession).

The call format is lmforge/chat_format.py's. See docs/ARCHITECTURE.md ("Tool use").
"""
