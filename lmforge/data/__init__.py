"""The collect/clean pipeline: raw documents from every configured source (collect.py, sources.py,
crawl.py) into data/raw, then one cleaning step per file (extract, language, quality, unwanted,
classifier, pii, dedup; steps.py is their shape, pipeline.py builds them per profile) into
data/clean, data/removed and data/unreadable (clean.py). The built-in world it reads by default
lives in lmforge/world/; tokenizing the cleaned text is lmforge/tokenizer/.
"""
