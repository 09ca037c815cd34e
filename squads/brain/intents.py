"""Recognising what the user wants from ordinary wording.

A trigger is a phrase of word groups: ``keeps restart*`` or
``terminate|kill session|backend|pid``. Each group is a set of alternatives
(globs allowed); the groups must appear in order, with at most a few words
between them, so "terminate the blocking session" matches the second example.
A runbook scores the sum of the group counts of the triggers it matches: a
longer, more specific phrase outweighs a single word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from fnmatch import translate
from functools import lru_cache
from typing import Protocol, TypeVar

WORD = re.compile(r"[a-z0-9][a-z0-9_.'/-]*[a-z0-9]|[a-z0-9]")
MAX_GAP = 4
AFFIRMATIVE = {"yes", "y", "yep", "yeah", "sure", "ok", "okay", "please", "go", "do"}
NEGATIVE = {"no", "nope", "nah", "don't", "dont", "not", "never", "cancel", "stop", "wait"}


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` with surrounding punctuation dropped."""
    return WORD.findall(text.lower())


@lru_cache(maxsize=4096)
def _groups(trigger: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(alt for alt in group.split("|") if alt) for group in trigger.lower().split())


Matcher = tuple[frozenset[str], Callable[[str], object] | None]


@lru_cache(maxsize=4096)
def _matchers(trigger: str) -> tuple[Matcher, ...]:
    """Each group as (its exact words, one compiled regex for its globs): matching runs for every
    trigger of every runbook on every word of a message, so fnmatch per word was the brain's hot spot."""
    out: list[Matcher] = []
    for group in _groups(trigger):
        globs = [alt for alt in group if any(c in alt for c in "*?[")]
        exact = frozenset(alt for alt in group if alt not in globs)
        out.append((exact, re.compile("|".join(translate(g) for g in globs)).match if globs else None))
    return tuple(out)


def _matches_word(group: Matcher, word: str) -> bool:
    exact, glob = group
    return word in exact or (glob is not None and glob(word) is not None)


def trigger_matches(trigger: str, text_words: Sequence[str]) -> bool:
    """Whether the trigger's groups appear in order, each within MAX_GAP words of the previous."""
    groups = _matchers(trigger)
    if not groups:
        return False
    for start, word in enumerate(text_words):
        if not _matches_word(groups[0], word):
            continue
        pos, ok = start, True
        for group in groups[1:]:
            window = text_words[pos + 1 : pos + 2 + MAX_GAP]
            hit = next((i for i, w in enumerate(window) if _matches_word(group, w)), None)
            if hit is None:
                ok = False
                break
            pos = pos + 1 + hit
        if ok:
            return True
    return False


def score(triggers: Iterable[str], text_words: Sequence[str]) -> int:
    """Sum of the group counts of every matching trigger (0: no match)."""
    return sum(len(_groups(t)) for t in triggers if trigger_matches(t, text_words))


class Triggered(Protocol):
    @property
    def triggers(self) -> list[str]: ...


T = TypeVar("T", bound=Triggered)


def best_match(candidates: Sequence[T], text: str) -> tuple[T | None, int]:
    """The candidate whose triggers score highest for ``text`` (first wins a tie)."""
    text_words = words(text)
    best: T | None = None
    best_score = 0
    for candidate in candidates:
        value = score(candidate.triggers, text_words)
        if value > best_score:
            best, best_score = candidate, value
    return best, best_score


def is_affirmative(text: str) -> bool:
    """A short reply that accepts an offer: "yes", "sure, go ahead", "yes, show me the usage".

    A long message that happens to start with "ok" or "do" is a new question, not a yes."""
    found = words(text)
    question = text.rstrip().endswith("?")  # "ok so how much memory can a node give?" asks something new
    return 0 < len(found) <= 12 and not question and found[0] in AFFIRMATIVE and not (set(found[:4]) & NEGATIVE)


def is_negative(text: str) -> bool:
    """A reply that declines an offer."""
    found = words(text)
    return bool(found) and found[0] in NEGATIVE
