"""Serving: the OpenAI-compatible HTTP API and the web chat page (api.py, static/index.html),
the preference-labeling page (label.py, static/label.html) and what guards both (guard.py).

    lmforge serve --run-dir runs/tiny        # then open http://127.0.0.1:8000/
"""
