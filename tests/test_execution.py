"""The decide → audit → run → audit path, on both databases."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select

from permissions.models import Decision
from squads.audit.models import AuditRecord
from squads.audit.verify import verify
from squads.storage.db import session_scope
from squads.storage.service import Database
from tests.policy_helpers import LAB, default_engine
from tools import execution_records
from tools.execution import ExecutionRequest, execute, run_decided
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
    request = ExecutionRequest(agent=agent, argv=argv, actor="alice", squad=agent.split("/")[0], timeout=5,
                               max_output=1000, conversation_id="conv-1", incident_id="INC-1")
    return execute(request=request, sessions=db.sessions, engine=default_engine(), executor=executor, node=LAB)


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


def test_a_request_keeps_the_argv_it_was_given(db: Database) -> None:
    # The argv decided on and run is the one the request was built with, whatever the caller's list does later.
    argv = ["df", "-h"]
    request = ExecutionRequest(agent="webserver/service-health", argv=argv, actor="alice", squad="webserver",
                               timeout=5, max_output=1000)
    argv[1:] = ["--output=source"]
    executor = Recorder()
    outcome = execute(request=request, sessions=db.sessions, engine=default_engine(), executor=executor, node=LAB)
    assert request.argv == ("df", "-h") and outcome.decision.argv == ("df", "-h")
    assert executor.calls == [["/usr/bin/df", "-h"]]


def test_a_shell_string_in_a_request_is_refused_by_the_policy_and_audited(db: Database) -> None:
    request = ExecutionRequest(agent="webserver/service-health", argv="df -h", actor="alice", squad="webserver",
                               timeout=5, max_output=1000)
    executor = Recorder()
    outcome = execute(request=request, sessions=db.sessions, engine=default_engine(), executor=executor, node=LAB)
    assert outcome.decision.rule == "hygiene:type" and executor.calls == []
    assert _kinds(db) == [("decision", "deny")]


def _decided(db: Database, agent: str, argv: list[str]) -> tuple[Decision, int]:
    decision = default_engine().decide(agent=agent, node=LAB, argv=argv)
    with session_scope(db.sessions) as session:
        seq = execution_records.record_decision(session, decision=decision, actor="alice", squad="webserver",
                                                conversation_id="conv-9")
        return decision, seq.seq


def test_run_decided_runs_the_decision_under_the_request_context(db: Database) -> None:
    decision, seq = _decided(db, "webserver/service-health", ["df", "-h"])
    request = ExecutionRequest(agent="webserver/service-health", argv=["df", "-h"], actor="bob", squad="webserver",
                               timeout=5, max_output=1000, conversation_id="conv-9", incident_id="INC-9")
    executor = Recorder()
    outcome = run_decided(request=request, sessions=db.sessions, executor=executor, decision=decision,
                          decision_seq=seq, approved_by="bob")
    assert executor.calls == [["/usr/bin/df", "-h"]] and outcome.finished_seq is not None
    with db.sessions() as session:
        started = session.get(AuditRecord, outcome.started_seq)
        assert started is not None and (started.actor, started.conversation_id, started.incident_id, started.ref_seq) \
            == ("bob", "conv-9", "INC-9", seq)


@pytest.mark.parametrize(("agent", "argv"), [("webserver/service-health", ["df", "-i"]),
                                             ("database/query-analysis", ["df", "-h"])])
def test_run_decided_refuses_a_decision_of_another_command(db: Database, agent: str, argv: list[str]) -> None:
    decision, seq = _decided(db, "webserver/service-health", ["df", "-h"])
    request = ExecutionRequest(agent=agent, argv=argv, actor="bob", squad="webserver", timeout=5, max_output=1000)
    executor = Recorder()
    with pytest.raises(ValueError, match="decide the request's own argv first"):
        run_decided(request=request, sessions=db.sessions, executor=executor, decision=decision,
                    decision_seq=seq)
    assert executor.calls == [] and _kinds(db) == [("decision", "allow")]
