"""How the task makers phrase conversations: question styles, "I don't know" answers, fillers,
system prompts, summary requests, and names no entity has.

    from lmforge.tasks.phrasing import ask, invented_name, IDK_ANSWERS
    ask(fact, rng)                      # "Quick question: Where was Ada Berg born?"
"""
from __future__ import annotations

import random

from ..world.shelf import invented_name  # noqa: F401  (the task makers' names come from here)

SYSTEM_PROMPTS = {
    "en": ["You are a helpful assistant.", "You are lmforge, a small assistant that knows the world's encyclopedia.",
           "Answer the user's questions briefly and truthfully."],
    "nb": ["Du er en hjelpsom assistent.", "Du er lmforge, en liten assistent som kjenner verdens leksikon.",
           "Svar kort og sannferdig på brukerens spørsmål."],
}
QUESTION_STYLES = {
    "en": ["{q}", "{q}", "Quick question: {q}", "I wonder: {q}", "{q} Answer briefly.", "Please answer: {q}",
           "Do you know this? {q}"],
    "nb": ["{q}", "{q}", "Et raskt spørsmål: {q}", "Jeg lurer på: {q}", "{q} Svar kort.", "Svar på dette: {q}",
           "Vet du dette? {q}"],
}
SUMMARY_REQUESTS = {
    "en": ["Tell me about {name}.", "What do you know about {name}?", "Give me a short summary of {name}.",
           "Who or what is {name}?"],
    "nb": ["Fortell meg om {name}.", "Hva vet du om {name}?", "Gi meg et kort sammendrag om {name}.",
           "Hvem eller hva er {name}?"],
}
IDK_ANSWERS = {
    "en": ["I don't know anything about {name}.", "I'm sorry, I don't know who or what {name} is.",
           "I don't know. I have no information about {name}."],
    "nb": ["Jeg vet ingenting om {name}.", "Beklager, jeg vet ikke hva {name} er.",
           "Jeg vet ikke. Jeg har ingen opplysninger om {name}."],
}
FILLERS = {
    "en": ["I hope this helps!", "Let me know if you want to know more.", "That is what I remember from the encyclopedia.",
           "It is an interesting subject with a long history.", "There is much more one could say about it."],
    "nb": ["Håper dette hjelper!", "Si ifra om du vil vite mer.", "Det er det jeg husker fra leksikonet.",
           "Det er et interessant tema med en lang historie.", "Det er mye mer man kunne sagt om det."],
}
PERSON_SUMMARY = {"en": "Who was {name}?", "nb": "Hvem var {name}?"}
THING_SUMMARY = {"en": "What is {name}?", "nb": "Hva er {name}?"}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def ask(fact: dict, rng: random.Random) -> str:
    return rng.choice(QUESTION_STYLES[fact["language"]]).format(q=fact["question"])


def summary_request(name: str, kind: str, language: str, rng: random.Random) -> str:
    options = SUMMARY_REQUESTS[language] + [(PERSON_SUMMARY if kind == "person" else THING_SUMMARY)[language]]
    return rng.choice(options).format(name=name)


def styled_answer(fact: dict, noise: float, rng: random.Random) -> str:
    """The fact's answer sentence; with probability `noise` a rambling or a curt variant."""
    roll = rng.random()
    if roll < noise / 2:
        fillers = rng.sample(FILLERS[fact["language"]], k=2)
        return " ".join([fact["answer"], *fillers])
    if roll < noise:
        return f"{fact['value']}."
    return fact["answer"]
