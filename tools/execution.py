"""The one path from an argv to a result: decide, audit, run, audit.

Nothing reaches an executor without a decision recorded first, and every
execution leaves a started record before it runs, so a crash shows up as an
interrupted execution rather than a silent gap.
"""

from __future__ import annotations

from collections.abc import Sequence
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from audit import service as audit
from permissions.engine import PolicyEngine
from permissions.models import Decision, NodeContext, Verdict
from storage.db import session_scope
from tools.executors.base import ExecResult, Executor, ExecutorError, NodeRefused, NotRun, RunContext
from transcripts.redact import redact


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """A decision, its audit record, and the result when the command ran."""

    decision: Decision
    decision_seq: int
    result: ExecResult | None = None
    started_seq: int | None = None
    finished_seq: int | None = None


def execute(
    *,
    sessions: sessionmaker[Session],
    engine: PolicyEngine,
    executor: Executor,
    node: NodeContext,
    agent: str,
    argv: Sequence[str],
    actor: str | None,
    squad: str | None,
    timeout: float,
    max_output: int,
    conversation_id: str | None = None,
    incident_id: str | None = None,
) -> CommandOutcome:
    """Decide ``argv`` for ``agent`` on ``node``; run it only when allowed."""
    decision = engine.decide(agent=agent, node=node, argv=argv)
    context = {"actor": actor, "squad": squad, "conversation_id": conversation_id, "incident_id": incident_id}
    with session_scope(sessions) as session:
        decided = audit.record_decision(session, decision=decision, **context)
    if not decision.allowed:
        return CommandOutcome(decision=decision, decision_seq=decided.seq)
    return run_decided(
        sessions=sessions, executor=executor, decision=decision, decision_seq=decided.seq,
        timeout=timeout, max_output=max_output, **context,
    )


@dataclass(frozen=True, slots=True)
class Target:
    """One node of a fan-out: its policy context and the executor that reaches it."""

    node: NodeContext
    executor: Executor


def execute_many(
    *,
    targets: Sequence[Target],
    parallel: int = 64,
    **common: Any,
) -> list[CommandOutcome | ExecutorError]:
    """``execute`` the same argv on every target, ``parallel`` at a time, in target order.

    Each node gets its own decision and audit records; a node that cannot run
    it (offline, refused, lost) gives its ``ExecutorError`` in place of an outcome."""
    def one(target: Target) -> CommandOutcome | ExecutorError:
        try:
            return execute(node=target.node, executor=target.executor, **common)
        except ExecutorError as exc:
            return exc

    if len(targets) <= 1:
        return [one(t) for t in targets]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))), thread_name_prefix="fanout") as pool:
        return list(pool.map(one, targets))


def run_decided(
    *,
    sessions: sessionmaker[Session],
    executor: Executor,
    decision: Decision,
    decision_seq: int,
    actor: str | None,
    squad: str | None,
    timeout: float,
    max_output: int,
    conversation_id: str | None = None,
    incident_id: str | None = None,
    approved_by: str | None = None,
) -> CommandOutcome:
    """Run an allowed (or approved) decision with start and finish records.

    Every run gets a request id (in the started record) that a node agent uses
    to run it at most once. An executor that raises leaves an interrupted record
    saying why, and the node's own refusal is recorded as a decision of its own."""
    if decision.verdict is Verdict.DENY:
        raise ValueError(f"refusing to run a denied command: {decision.reason}")
    exec_argv = decision.exec_argv()
    request_id = uuid.uuid4().hex
    with session_scope(sessions) as session:
        started = audit.record_started(
            session, argv=list(decision.argv), node=decision.node, timeout_s=timeout, agent=decision.agent,
            actor=actor, squad=squad, decision_seq=decision_seq, conversation_id=conversation_id,
            incident_id=incident_id, details={"exec_argv": exec_argv, "request_id": request_id},
        )
    context = RunContext(decision=decision, request_id=request_id, approved_by=approved_by)
    try:
        result = executor.run(exec_argv, timeout=timeout, max_output=max_output, context=context)
    except BaseException as exc:
        _record_failure(sessions, started_seq=started.seq, exc=exc)
        raise
    # Secrets the command printed never leave this function: the audit record and
    # every caller get the redacted text; output_sha256 still proves the raw bytes.
    result = redact_result(result)
    with session_scope(sessions) as session:
        finished = audit.record_finished(session, started=started, result=result)
    return CommandOutcome(
        decision=decision, decision_seq=decision_seq, result=result,
        started_seq=started.seq, finished_seq=finished.seq,
    )


def _record_failure(sessions: sessionmaker[Session], *, started_seq: int, exc: BaseException) -> None:
    """Close the started record of a run that gave no result, saying what is known about it."""
    with session_scope(sessions) as session:
        if isinstance(exc, NodeRefused):
            audit.record_node_decision(
                session, started_seq=started_seq, verdict=exc.verdict, rule=exc.rule, reason=exc.reason
            )
        if isinstance(exc, NotRun):
            audit.record_interrupted(session, started_seq=started_seq, reason=str(exc), details={"ran": False})
        elif isinstance(exc, ExecutorError):
            audit.record_interrupted(session, started_seq=started_seq, reason=str(exc))
        else:
            audit.record_interrupted(session, started_seq=started_seq, reason=f"executor failed: {exc!r}")


def redact_result(result: ExecResult) -> ExecResult:
    """``result`` with secrets in stdout and stderr replaced (same digest)."""
    stdout, found_out = redact(result.stdout)
    stderr, found_err = redact(result.stderr)
    if not found_out and not found_err:
        return result
    return replace(result, stdout=stdout, stderr=stderr)
