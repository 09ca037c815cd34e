"""Pulling the values a runbook needs (pod, namespace, unit, pid, ...) out of a message.

Each squad names its slots in its bundle's ``slots.yaml`` (a validator and patterns);
the slots several squads share (``path``, ``pid``) are defined here once.

Everything found here is untrusted text. Each value is checked by the same
validator its tool parameter uses, so a value that would be refused later is
refused now, with a message that says what a valid one looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from permissions.validators import ValueRejected, from_spec
from squads.brain.models import Slot, SlotSpec

# Words that follow "pod", "service", "in", ... in ordinary sentences but are never names.
STOPWORDS = frozenset(
    """a an the is are was were be been it its this that these those my our your their his her
    in on of for to from with by at as and or but not no any some all every each which what who
    keeps keep has have had does do did can could should would will named called name names
    pod pods service services namespace namespaces deployment deployments container node nodes
    application app apps here there now today yesterday please again still also just only
    state status crashloopbackoff restarting crashing running pending failing broken down up
    never ever become becomes became keep kept won't wont cannot can't stuck after before since
    delete remove kill restart reload scale describe show get list check run execute look see
    why how when where last past hour hours minute minutes day days week night morning evening
    logs log cluster loop phase progress general total order case fact time prod-like way
    so then again too very really also that which because stuck one other same""".split()
)

# Up to white space or a comma: a token with shell punctuation is captured whole and
# then fails its validator, rather than being silently cut down to a valid prefix.
NAME = r"([^\s,]+)"
SHARED_SLOT = "shared"  # in slots.yaml, ``path: shared`` takes the brain's own definition
# An IPv4 address (with a port or a prefix length) or an IPv6 one.
ADDRESS = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d+|/\d{1,2})?|\[?[0-9a-f]*:[0-9a-f:]+\]?(?::\d+)?", re.IGNORECASE)

# Slots more than one squad uses, defined once. ``path`` is also the engine's own: a runbook's
# ``seed_paths`` takes every path in the message that this slot would accept.
SHARED: dict[str, Slot] = {
    "path": Slot(
        name="path", type="path:/",
        # Not the "//host" of a URL, nor a fragment of a relative path; captured up to white space so
        # that "/var/log/x/$(id)" is refused whole rather than cut down to "/var/log/x".
        patterns=(re.compile(r"(?<![\w.~/:-])(/(?!/)[^\s,'\"`]*[^\s,'\"`.;:!?)])", re.IGNORECASE),),
    ),
    "pid": Slot(
        name="pid", type="pid",
        patterns=tuple(re.compile(p, re.IGNORECASE)
                       for p in (rf"\bpid\s*[:=#]?\s*{NAME}", r"\b(?:backend|session|process|connection)\s+(\d[^\s,]*)")),
    ),
}


def compile_slots(specs: Mapping[str, SlotSpec | str]) -> dict[str, Slot]:
    """A bundle's slot vocabulary from its ``slots.yaml`` entries (``name: shared`` or a ``SlotSpec``).

    Raises ValueError naming the slot when a type is no validator, a pattern does not compile or
    captures nothing, or a shared slot does not exist."""
    vocabulary: dict[str, Slot] = {}
    for name, spec in specs.items():
        if isinstance(spec, str):
            if spec != SHARED_SLOT or name not in SHARED:
                raise ValueError(f"slot {name}: {spec!r} is not a definition; write 'shared' for one of "
                                 f"{sorted(SHARED)}, or a mapping with type and patterns")
            vocabulary[name] = SHARED[name]
            continue
        try:
            from_spec(spec.type)
        except ValueError as exc:
            raise ValueError(f"slot {name}: type {spec.type!r}: {exc}") from None
        patterns: list[re.Pattern[str]] = []
        soft: set[int] = set()
        for index, entry in enumerate(spec.patterns):
            text, loose = (entry, False) if isinstance(entry, str) else (entry.pattern, entry.soft)
            try:
                compiled = re.compile(text.replace("{name}", NAME), re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"slot {name}: pattern {text!r} is not a regular expression: {exc}") from None
            if compiled.groups < 1:
                raise ValueError(f"slot {name}: pattern {text!r} captures nothing; its group 1 is the value")
            patterns.append(compiled)
            if loose:
                soft.add(index)
        vocabulary[name] = Slot(
            name=name, type=spec.type, patterns=tuple(patterns), soft=frozenset(soft),
            aliases={k.lower(): v for k, v in spec.aliases.items()}, lower=spec.lower, keep=spec.keep,
        )
    return vocabulary


@dataclass
class Extraction:
    """Values found in a message, and the ones that failed their validator."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    text: str = ""


def _candidates(slot: Slot, text: str) -> Iterable[tuple[str, bool]]:
    """(value, soft) for each plausible value, most specific pattern first."""
    for index, pattern in enumerate(slot.patterns):
        for match in pattern.finditer(text):
            value = match.group(1).rstrip(".,:!?'\"").lstrip("('\"")
            if value.endswith(")") and "(" not in value:
                value = value[:-1]  # "(pod foo)" but not "$(id)"
            if value.lower() in STOPWORDS:
                continue
            yield slot.aliases.get(value.lower(), value), index in slot.soft


def extract(text: str, vocabulary: Mapping[str, Slot], slots: Iterable[str] | None = None) -> Extraction:
    """The first plausible value of each slot of ``vocabulary`` (or only of ``slots``) in ``text``, validated.

    Patterns are tried most specific first, and the first candidate decides: a
    candidate that fails its validator is an error, never a reason to try a
    looser pattern that might pick a valid-looking piece of the same token."""
    found = Extraction(text=text)
    for name in vocabulary if slots is None else slots:
        slot = vocabulary.get(name)
        if slot is None:
            continue
        validator = from_spec(slot.type)
        for value, soft in _candidates(slot, text):
            if slot.lower:
                value = value.lower()
            # An address ("10.0.0.5", "10.0.0.5:5432", "10.0.0.0/24") is never a number or a name that
            # failed: "connect to 10.0.0.5" is no replica count, so it is skipped, not refused.
            if (soft or ADDRESS.fullmatch(value)) and not validator.check(value):
                continue
            try:
                found.values[name] = validator.validate(value, what=name)
            except ValueRejected as exc:
                found.errors[name] = str(exc)
            break
    return found


def validate_slot(vocabulary: Mapping[str, Slot], slot: str, value: str) -> str:
    """Check one value against its slot's validator (raises ``ValueRejected``)."""
    spec = vocabulary.get(slot)
    return from_spec(spec.type if spec else "any").validate(value, what=slot)


def all_paths(text: str) -> list[str]:
    """Every absolute path in ``text`` that passes the path validator, in order, once each."""
    path = SHARED["path"]
    validator = from_spec(path.type)
    found: list[str] = []
    for match in path.patterns[0].finditer(text):
        value = match.group(1).rstrip(".,:!?'\"")
        if validator.check(value) and value not in found:
            found.append(value)
    return found
