"""The built-in world: a seeded, fully deterministic generator of a small fictional world, and its web site.

The world has people, places, rivers, inventions, animals and companies with invented
names, a few attributes each, and links between them (a person came from a place, an
invention was invented by a person, a town lies on a river). From it come

  - the fact table: one row per (entity, attribute, language) with a cloze `prompt`
    whose greedy continuation is the `value`, plus a question and an answer sentence;
  - documents: encyclopedic articles (several reworded variants per entity and
    language), short stories, two-speaker dialogues and arithmetic worksheets, in
    English and Norwegian Bokmål. Every fact they state is true in the fact table.

A `held_out` share of the entities gets fact rows but never appears in any document,
so later stages can test "I don't know" on entities the model never saw.

The language is templated on purpose: a ~3M-parameter model trained for minutes on a
CPU should memorize the facts, so each fact appears in one canonical sentence,
`<entity name> <relation phrase> <value>`, many times (in every article variant, in the
fact box and the question section of the article, and in the articles of linked
entities), and no text ever puts a prompt in front of anything but its value.

    from lmforge.config import WorldConfig
    from lmforge.world import build_world, write_world
    world = build_world(WorldConfig())
    for doc in world.documents(): ...        # generated lazily, same order every time
    stats = write_world(world, Path("runs/x/data/world"))

    python -m lmforge.world                  # stats and three sample documents (default config)

The package: words.py (the word tables), build.py (entities, facts, the unseen partition),
documents.py (the World and its documents), site.py with site_dirt.py, site_pii.py and
unwanted_text.py (the world published as a dirty web site, with its ground truth),
site_server.py (serving it over HTTP), prose.py (generic long prose), shelf.py (the lookup
tool's reference cards). The collect stage (lmforge/data/collect.py) reads the world from here.
"""
from .build import UNSEEN_SPLITS, build_world, partition_unseen, read_facts, world_stats, write_world
from .documents import World
from .words import LANGUAGES, SITE

__all__ = ["LANGUAGES", "SITE", "UNSEEN_SPLITS", "World", "build_world", "partition_unseen", "read_facts",
           "world_stats", "write_world"]
