"""The step engine's small parts: conditions, parameter templates, fact merging, the next step."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from squads.brain.models import Facts, Step

# {name}, or {a|b} for "a, else b" (e.g. a pid the user named, else the blocker found earlier).
# {item.namespace} reads a field of a list item that is a mapping (a pod with its namespace).
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.|]*)\}")
# Facts that describe the conversation; with the squad's slots (what the user said) they are kept
# from one diagnosis to the next, and everything else is evidence.
CONVERSATION_FACTS = frozenset({"message", "raw_message", "user_slots", "now"})


def holds(conditions: list[str], facts: Facts) -> bool:
    """Whether every condition (``name``, ``!name``, ``name=value``) holds."""
    for cond in conditions:
        if cond.startswith("!"):
            if facts.get(cond[1:]):
                return False
        elif "=" in cond:
            name, _, value = cond.partition("=")
            if str(facts.get(name, "")) != value:
                return False
        elif not facts.get(cond):
            return False
    return True


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def fill(template: dict[str, str | int | bool], facts: Facts, item: Any = None) -> dict[str, Any] | None:
    """Step parameters with ``{fact}`` and ``{item}`` filled in; None when a fact is missing."""
    values = {**facts, "item": item}

    def get(name: str) -> Any:
        head, _, field = name.partition(".")
        value = values.get(head)
        return value.get(field) if field and isinstance(value, dict) else None if field else value

    def lookup(name: str) -> Any:
        return next((get(n) for n in name.split("|") if not _empty(get(n))), None)

    out: dict[str, Any] = {}
    for key, raw in template.items():
        if not isinstance(raw, str):
            out[key] = raw
            continue
        names = PLACEHOLDER.findall(raw)
        if any(lookup(n) is None for n in names):
            return None
        if len(names) == 1 and raw == "{" + names[0] + "}":
            out[key] = lookup(names[0])
        else:
            out[key] = PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), raw)
    return out


def fill_text(text: str, facts: Facts) -> str:
    """``text`` with ``{fact}`` placeholders filled (unknown ones left as they are)."""
    filled = fill({"text": text}, facts)
    return str(filled["text"]) if filled else text


SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"(])")


def complete_text(text: str, facts: Facts, *, neutral: bool = True) -> str:
    """``text`` for a reply: every placeholder a fact fills is filled, and no ``{placeholder}`` ever
    survives. A sentence whose placeholder no fact fills is dropped ("Fix {file} at line {line}."
    when the file is unknown); when every sentence would go, each unfilled placeholder becomes a
    neutral word ("the file") so the text still reads, or, with ``neutral=False`` (advice that
    needs facts nobody found does not apply), the text is dropped: "" is returned."""
    values = dict(facts)

    def one(match: re.Match[str]) -> str:
        filled = fill({"x": match.group(0)}, values)
        return str(filled["x"]) if filled is not None else match.group(0)

    filled = PLACEHOLDER.sub(one, text)
    if not PLACEHOLDER.search(filled):
        return filled
    kept = [s for s in SENTENCE.split(filled) if not PLACEHOLDER.search(s)]
    if kept or not neutral:
        return " ".join(kept)  # "" (not neutral): the text needs facts nobody found, so it does not apply
    return PLACEHOLDER.sub(lambda m: "the " + m.group(1).split("|")[0].split(".")[-1].replace("_", " "), filled)


def merge_facts(facts: Facts, new: Facts) -> None:
    """Scalars replace; lists accumulate without duplicates (evidence from several steps); mappings merge."""
    for key, value in new.items():
        if isinstance(value, dict):
            current = facts.get(key)
            facts[key] = {**(current if isinstance(current, dict) else {}), **value}
        elif isinstance(value, list):
            current = facts.get(key)
            merged = list(current) if isinstance(current, list) else []
            merged.extend(v for v in value if v not in merged)
            facts[key] = merged
        else:
            facts[key] = value


def forget_evidence(facts: Facts, slots: Iterable[str]) -> None:
    """Drop what earlier diagnoses learned (pids, pods, ports...), keeping what the user said (``slots``)."""
    kept = CONVERSATION_FACTS | set(slots)
    for key in [k for k in facts if k not in kept]:
        del facts[key]


def next_step(steps: list[Step], facts: Facts, done: set[str]) -> tuple[Step, dict[str, Any], str, Any] | None:
    """The first eligible step whose command has not run yet: (step, params, its key in ``done``, item)."""
    for step in steps:
        if not holds(step.when, facts):
            continue
        items: list[Any] = [None]
        if step.foreach:
            value = facts.get(step.foreach)
            items = (value if isinstance(value, list) else [value] if value else [])[: step.limit]
        for item in items:
            params = fill(step.with_, facts, item)
            if params is None:
                continue
            # The same command read by another analyzer is another step; its output is reused.
            key = f"{step.tool}:{sorted(params.items())!r}|{step.analyze or ''}"
            if key in done:
                continue
            return step, params, key, item
    return None
