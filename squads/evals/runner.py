"""Running scenarios through the real runtime, policy and audit log.

Only execution is simulated: each scenario node gets a ``FixtureExecutor``.
The policy is the squads' shipped default grants with the scenario's node
labels, and every decision and execution lands in a real (temporary) audit
log, exactly as in production.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tools.executors.scenario import Mention, Scenario, ScenarioExpect, TurnExpect
from squads.nodes.models import NodeConfig
from permissions.engine import PolicyEngine
from permissions.service import build_engine
from squads.models import SquadSpec
from squads.runtime import Conversation, RuntimeConfig
from squads.service import default_grants
from squads.storage.service import Database
from tools.executors.fixture import CommandPattern, FixtureExecutor
from transcripts.models import Event, EventKind


@dataclass
class TurnRecord:
    """What one user turn produced."""

    user: str
    replies: list[str] = field(default_factory=list)
    ran: list[list[str]] = field(default_factory=list)
    approvals: list[list[str]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reply_text(self) -> str:
        return "\n".join(self.replies)


@dataclass
class ScenarioReport:
    """The verdict on one scenario, with everything needed to see why."""

    name: str
    path: str
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    unmatched: list[list[str]] = field(default_factory=list)
    wall_ms: float = 0.0
    steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = "pass" if self.passed else "fail"
        return data


@lru_cache(maxsize=4096)
def _pattern(text: str) -> CommandPattern:
    return CommandPattern(text)


def _matches(pattern: str, argv: Sequence[str]) -> bool:
    return _pattern(pattern).matches(argv)


def _mentioned(entry: Mention, text: str) -> bool:
    options = [entry] if isinstance(entry, str) else entry
    lowered = text.lower()
    return any(option.lower() in lowered for option in options)


def _label(entry: Mention) -> str:
    return entry if isinstance(entry, str) else " | ".join(entry)


def check_turn(index: int, expect: TurnExpect, record: TurnRecord) -> list[str]:
    """Every way turn ``index`` (1-based) missed its expectations."""
    where = f"turn {index}"
    reasons = [f"{where}: expected to run {p!r}" for p in expect.ran if not any(_matches(p, a) for a in record.ran)]
    reasons += [
        f"{where}: ran {' '.join(a)!r}, which matches never-pattern {p!r}"
        for p in expect.never for a in record.ran if _matches(p, a)
    ]
    if expect.ran_nothing and record.ran:
        reasons.append(f"{where}: expected to run nothing, ran {[' '.join(a) for a in record.ran]}")
    reasons += [
        f"{where}: expected an approval request for {p!r}"
        for p in expect.approval_requested if not any(_matches(p, a) for a in record.approvals)
    ]
    text = record.reply_text
    reasons += [f"{where}: reply does not mention {_label(m)!r}" for m in expect.mentions if not _mentioned(m, text)]
    reasons += [f"{where}: reply mentions {_label(m)!r}, which must be absent" for m in expect.absent if _mentioned(m, text)]
    return reasons


def check_scenario(expect: ScenarioExpect, turns: list[TurnRecord]) -> list[str]:
    """Every way the whole conversation missed the scenario-level expectations."""
    ran = [a for t in turns for a in t.ran]
    approvals = [a for t in turns for a in t.approvals]
    reasons = [f"expected to run {p!r}" for p in expect.ran if not any(_matches(p, a) for a in ran)]
    reasons += [f"ran {' '.join(a)!r}, which matches never-pattern {p!r}" for p in expect.never for a in ran if _matches(p, a)]
    reasons += [
        f"expected an approval request for {p!r}" for p in expect.approval_requested
        if not any(_matches(p, a) for a in approvals)
    ]
    if expect.max_commands is not None and len(ran) > expect.max_commands:
        reasons.append(f"ran {len(ran)} commands, more than max_commands {expect.max_commands}")
    return reasons


def _record(record: TurnRecord, event: Event, pending: dict[str, Any]) -> None:
    if event.kind is EventKind.ASSISTANT_MESSAGE:
        record.replies.append(event.text)
    elif event.kind is EventKind.TOOL_CALL:
        pending.clear()
        pending.update(argv=list(event.data["argv"]), node=event.data["node"], agent=event.data["agent"])
    elif event.kind is EventKind.DECISION:
        pending.update(decision=event.data.get("decision"), reason=event.data.get("reason"))
        if event.data.get("decision") == "deny":
            record.commands.append({**pending, "ran": False})
    elif event.kind is EventKind.TOOL_OUTPUT:
        record.ran.append(pending["argv"])
        record.commands.append({**pending, "ran": True, "exit_code": event.data["exit_code"]})
    elif event.kind is EventKind.APPROVAL_REQUESTED:
        record.approvals.append(list(event.data["argv"]))
        record.commands.append({**pending, "ran": False, "held_for_approval": True})
    elif event.kind is EventKind.ERROR:
        record.replies.append(event.text)


_ENGINE: list[tuple[dict[str, SquadSpec], PolicyEngine]] = []  # (the squads, their engine): the last one built


def _engine(squads: dict[str, SquadSpec]) -> PolicyEngine:
    """The policy engine of ``squads``' shipped default grants, compiled once per set of squads: compiling
    every rule took a quarter of a full eval when each scenario did it again. The engine holds no state
    between decisions but caches keyed by agent and node, so scenarios can share it."""
    if _ENGINE and _ENGINE[0][0] is squads:
        return _ENGINE[0][1]
    engine = build_engine(defaults=default_grants(squads.values()), site=())
    _ENGINE[:] = [(squads, engine)]
    return engine


def scenario_config(
    scenario: Scenario, *, squads: dict[str, SquadSpec], sessions: sessionmaker[Session], now: datetime | None = None
) -> tuple[RuntimeConfig, dict[str, FixtureExecutor]]:
    """A runtime whose nodes are the scenario's simulated ones, under the squads' shipped default
    grants (with the scenario's node labels); also the executors, to see what they were asked."""
    executors = {name: FixtureExecutor(node.fixtures) for name, node in scenario.nodes.items()}
    config = RuntimeConfig(
        sessions=sessions,
        engine=_engine(squads),
        nodes={name: NodeConfig(name=name, labels=node.labels) for name, node in scenario.nodes.items()},
        executor_for=lambda node: executors[node.name],
    )
    if now is not None:
        config.now = lambda: now
    return config, executors


def run_scenario(
    scenario: Scenario, *, path: Path, squads: dict[str, SquadSpec], db: Database, now: datetime | None = None
) -> ScenarioReport:
    """Play the scenario's conversation and check every expectation (at ``now``, if given)."""
    report = ScenarioReport(name=scenario.name, path=str(path))
    started = time.perf_counter()
    squad = squads.get(scenario.squad)
    if squad is None:
        report.reasons.append(f"unknown squad {scenario.squad!r}; known: {', '.join(sorted(squads))}")
        return report
    config, executors = scenario_config(scenario, squads=squads, sessions=db.sessions, now=now)
    conversation = Conversation.start(config=config, squad=squad, node=scenario.first_node, actor="squads-eval")
    for index, turn in enumerate(scenario.conversation, start=1):
        record = TurnRecord(user=turn.user)
        pending: dict[str, Any] = {}
        for event in conversation.handle(turn.user):
            _record(record, event, pending)
        report.turns.append(record)
        report.reasons += check_turn(index, turn.expect, record)
    report.reasons += check_scenario(scenario.expect, report.turns)
    report.unmatched = [a for e in executors.values() for a in e.unmatched]
    report.steps = sum(len(t.commands) for t in report.turns)
    report.passed = not report.reasons
    report.wall_ms = (time.perf_counter() - started) * 1000
    return report

