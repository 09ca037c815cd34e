"""How a message asks: a follow-up on the diagnosis just made, its lead word, a closing yes/no question."""

from __future__ import annotations

from squads.brain.intents import words
from squads.brain.widen import YES_NO
from squads.brain.wording import sentences

FOLLOW_UP = frozenset({"too", "also", "again", "same", "likewise", "either"})
FILLERS = frozenset("ok okay k so and but well hmm alright right cool then um uh".split())
QUESTION_WORDS = frozenset("what why how which who where when is are does do did can could has have was were should".split())


def is_follow_up(text: str) -> bool:
    """ "Same for staging", "what about the other one", or any question with no symptom of its own
    ("what do I need to change?"): the previous diagnosis again, whose reply answers it."""
    said = words(text)
    lead = lead_word(text)  # "ok so is the site down now or what"
    question = text.rstrip().endswith("?") or lead in QUESTION_WORDS
    return bool(set(said) & FOLLOW_UP) or "what about" in text.lower() or question


def lead_word(text: str) -> str:
    """The first word of ``text`` that is not a filler ("ok so is it down?" -> "is")."""
    return next((w for w in words(text) if w not in FILLERS), "")


def ends_yes_no(text: str) -> bool:
    """Whether the message ends with a yes/no question ("... is it actually filling up?")."""
    last = (sentences(text) or [""])[-1]
    return lead_word(last) in YES_NO
