"""The decide → audit → run → audit path, on both databases."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select

from squads.audit.models import AuditRecord
from squads.audit.verify import verify
from squads.storage.service import Database
from tests.policy_helpers import LAB, default_engine
from tools import execution_records
from tools.execution import execute
from tools.executors.base import ExecResult


class Recorder:
    """An executor that records what reached it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def run(self, argv: Sequence[str], *, timeout: float, max_output: int, context: object = None) -> ExecResult:
        self.calls.append(list(argv))
        if self.fail:
            raise RuntimeError("node vanished")
        return ExecResult(exit_code=0, stdout="ok\n", stderr="", duration_ms=3, output_sha256="ab" * 32)


def _run(db: Database, executor: Recorder, agent: str, argv: list[str]):  # type: ignore[no-untyped-def]
    return execute(sessions=db.sessions, engine=default_engine(), executor=executor, node=LAB, agent=agent,
                   argv=argv, actor="alice", squad=agent.split("/")[0], timeout=5, max_output=1000,
                   conversation_id="conv-1", incident_id="INC-1")


def _kinds(db: Database) -> list[tuple[str, str | None]]:
    with db.sessions() as session:
        return [(r.kind, r.decision) for r in session.scalars(select(AuditRecord).order_by(AuditRecord.seq))]


def test_denied_and_held_commands_never_reach_the_executor(db: Database) -> None:
    executor = Recorder()
    denied = _run(db, executor, "webserver/service-health", ["ss", "-K"])
    held = _run(db, executor, "webserver/service-health", ["systemctl", "restart", "nginx"])
    assert executor.calls == []
    assert denied.result is None and held.result is None
    assert _kinds(db) == [("decision", "deny"), ("decision", "needs_approval")]


def test_allowed_command_runs_with_resolved_path_between_two_records(db: Database) -> None:
    executor = Recorder()
    outcome = _run(db, executor, "webserver/service-health", ["df", "-h"])
    assert executor.calls == [["/usr/bin/df", "-h"]]
    assert outcome.result is not None and outcome.result.stdout == "ok\n"
    assert _kinds(db) == [("decision", "allow"), ("execution_started", None), ("execution_finished", None)]
    with db.sessions() as session:
        assert execution_records.execution_state(session, outcome.started_seq) == "finished"
        finished = session.get(AuditRecord, outcome.finished_seq)
        assert finished is not None and finished.incident_id == "INC-1" and finished.exit_code == 0
        assert verify(session).ok


def test_executor_failure_leaves_an_interrupted_record(db: Database) -> None:
    with pytest.raises(RuntimeError):
        _run(db, Recorder(fail=True), "webserver/service-health", ["df", "-h"])
    assert [k for k, _ in _kinds(db)] == ["decision", "execution_started", "execution_interrupted"]
    with db.sessions() as session:
        assert execution_records.execution_state(session, 2) == "interrupted"
