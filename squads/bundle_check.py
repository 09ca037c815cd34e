"""The contract between a bundle's YAML and its Python, checked when the bundle loads.

Each analyzer declares the facts it may set and the finding codes it may add
(``@analyzer(name, facts=..., codes=...)``). A bundle loads only when:

- every tool and runbook step names an analyzer that exists;
- every fact a runbook reads (a step's ``when``, ``foreach`` and ``{placeholders}``, an offer's
  ``when``, an ``also`` condition) is set by an analyzer the runbook runs, or comes from the
  user (a slot of ``slots.yaml``, ``needs``, ``defaults``, ``seed``...) or the conversation;
- every ``advice`` code is one a finding of those analyzers can carry;
- every slot a runbook or action ``needs`` (or asks for) is in ``slots.yaml``;
- an action's parameters name only slots and facts the squad knows;
- every error signature (``signatures/*.yaml``) compiles, has a unique id, fills only named groups,
  names tools of the squad as next checks and matches its own examples (``squads.brain.signatures``).

A broken reference stops the load with the file, the entry and the closest known name, rather
than a ``KeyError`` or a step that silently never runs in the middle of a conversation.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from squads.brain.analyzers import GENERIC
from squads.brain.models import Registered, Runbook, Step
from squads.brain.signatures import Catalogue, SignatureError, load_catalogue, register
from squads.brain.steps import CONVERSATION_FACTS, PLACEHOLDER
from squads.grants import BundleError
from squads.models import SquadSpec

ENGINE_CODES = frozenset({"not_run"})  # findings the brain itself adds (a command it could not run)


def where(folder: Path, name: str) -> Path:
    """The file an entry came from: its own file when the bundle has one, else ``squad.yaml``."""
    return folder / name if (folder / name).exists() else folder / "squad.yaml"


def _close(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def check_analyzers(folder: Path, squad: SquadSpec, known: Iterable[str]) -> None:
    """Every analyzer a tool or a runbook step names exists in ``known``."""
    names = set(known)

    def unknown(name: str) -> str:
        return f"unknown analyzer {name!r}" + _close(name, names)

    for tool in squad.tools:
        if tool.analyze is not None and tool.analyze not in names:
            raise BundleError(f"{where(folder, 'tools.yaml')}: tool {tool.name}: {unknown(tool.analyze)}")
    for runbook in squad.runbooks:
        steps = [f for s in [*runbook.steps, *(s for offer in runbook.offers for s in offer.steps)] for f in s.flat()]
        for number, step in enumerate(steps, start=1):
            if step.analyze is not None and step.analyze not in names:
                raise BundleError(f"{where(folder, 'runbooks.yaml')}: runbook {runbook.name}, step {number} "
                                  f"({step.tool}): {unknown(step.analyze)}")


def _names(conditions: Iterable[str]) -> list[str]:
    return [c.lstrip("!").partition("=")[0] for c in conditions]


def _placeholders(values: Iterable[object]) -> list[str]:
    """The fact names ``{a|b.field}`` templates read (``item``, the foreach value, excluded)."""
    names = [n.split(".")[0] for v in values if isinstance(v, str) for g in PLACEHOLDER.findall(v) for n in g.split("|")]
    return [n for n in names if n != "item"]


class _Runbook:
    """What one runbook can know: the facts and codes of the analyzers it runs, and its given facts."""

    def __init__(self, squad: SquadSpec, runbook: Runbook, registry: dict[str, Registered]) -> None:
        by_name = {r.name: r for r in squad.runbooks}
        tools = {t.name: t for t in squad.tools}
        self.steps = [*runbook.steps, *(s for other in runbook.also for s in by_name[other].steps),
                      *(s for offer in runbook.offers for s in offer.steps)]
        self.steps = [f for s in self.steps for f in s.flat()]  # a step's fallbacks run in its scope
        entries = [registry[s.analyze or tools[s.tool].analyze or GENERIC] for s in self.steps]
        self.facts = {f for e in entries for f in e.facts}
        self.codes = {c for e in entries for c in e.codes} | ENGINE_CODES
        seeded = {*runbook.seed, *([runbook.seed_paths] if runbook.seed_paths else []),
                  *([f"{runbook.seed_targets}_hosts", f"{runbook.seed_targets}_ports"] if runbook.seed_targets else [])}
        self.given = {*squad.slots, *runbook.needs, *runbook.defaults, *seeded, *CONVERSATION_FACTS}

    def unknown(self, name: str) -> str | None:
        if name in self.facts or name in self.given:
            return None
        return (f"names fact {name!r}, which no analyzer this runbook runs declares and no slot, need, "
                f"default or seed provides{_close(name, self.facts | self.given)}")


def check_references(folder: Path, squad: SquadSpec, registry: dict[str, Registered]) -> None:
    """Every fact, advice code and slot the runbooks and actions name exists (see the module's doc)."""
    runbooks_file = where(folder, "runbooks.yaml")
    slots_file = where(folder, "slots.yaml")

    def fail(entry: str, problem: str) -> None:
        raise BundleError(f"{runbooks_file}: {entry}: {problem}")

    def check_step(scope: _Runbook, entry: str, step: Step) -> None:
        for number, fallback in enumerate(step.fallback, start=1):
            check_step(scope, f"{entry}, fallback {number} ({fallback.tool})", fallback)
        for what, names in (("when", _names(step.when)), ("foreach", [step.foreach] if step.foreach else []),
                            ("with", _placeholders(step.with_.values()))):
            for name in names:
                problem = scope.unknown(name)
                if problem:
                    fail(entry, f"{what} {problem}")

    all_facts: set[str] = set()
    for runbook in squad.runbooks:
        scope = _Runbook(squad, runbook, registry)
        all_facts |= scope.facts
        for number, step in enumerate(runbook.steps, start=1):
            check_step(scope, f"runbook {runbook.name}, step {number} ({step.tool})", step)
        for index, offer in enumerate(runbook.offers, start=1):
            for name in _names(offer.when):
                if problem := scope.unknown(name):
                    fail(f"runbook {runbook.name}, offer {index}", f"when {problem}")
            for number, step in enumerate(offer.steps, start=1):
                check_step(scope, f"runbook {runbook.name}, offer {index}, step {number} ({step.tool})", step)
        for other, conditions in runbook.also.items():
            for name in _names(conditions):
                if problem := scope.unknown(name):
                    fail(f"runbook {runbook.name}, also {other}", problem)
        for code in runbook.advice:
            if code not in scope.codes:
                fail(f"runbook {runbook.name}, advice {code}",
                     f"no analyzer this runbook runs declares the finding code {code!r}{_close(code, scope.codes)}")
        for kind, slots in (("needs", runbook.needs), ("ask_if_nothing", runbook.ask_if_nothing)):
            for slot in slots:
                if slot not in squad.slots:
                    fail(f"runbook {runbook.name}, {kind} {slot}",
                         f"{slot!r} is not a slot of {slots_file.name}{_close(slot, squad.slots)}, so a user can never give it")
    for action in squad.actions:
        for slot in action.needs:
            if slot not in squad.slots:
                fail(f"action {action.name}, needs {slot}",
                     f"{slot!r} is not a slot of {slots_file.name}{_close(slot, squad.slots)}, so a user can never give it")
        known = {*squad.slots, *action.needs, *action.defaults, *all_facts}
        for name in _placeholders(action.params.values()):
            if name not in known:
                fail(f"action {action.name}, params", f"names {name!r}, which is no slot, need, default or analyzer "
                     f"fact of this squad{_close(name, known)}")


def check_signatures(folder: Path, squad: SquadSpec) -> Catalogue:
    """Load the squad's error-signature catalogue (its ``signatures/*.yaml`` and the shared entries),
    validated against its tools, and make it the one its log analyzers match against."""
    try:
        table = load_catalogue(folder, tools=[t.name for t in squad.tools])
    except SignatureError as exc:
        raise BundleError(str(exc)) from None
    register(squad.name, table)
    return table
