"""The one path from an argv to a result: decide, audit, run, audit.

Nothing reaches an executor without a decision recorded first, and every
execution leaves a started record before it runs, so a crash shows up as an
interrupted execution rather than a silent gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from audit import service as audit
from permissions.engine import PolicyEngine
from permissions.models import Decision, NodeContext, Verdict
from storage.db import session_scope
from tools.executors.base import ExecResult, Executor
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
) -> CommandOutcome:
    """Run an allowed (or approved) decision with start and finish records."""
    if decision.verdict is Verdict.DENY:
        raise ValueError(f"refusing to run a denied command: {decision.reason}")
    exec_argv = decision.exec_argv()
    with session_scope(sessions) as session:
        started = audit.record_started(
            session, argv=list(decision.argv), node=decision.node, timeout_s=timeout, agent=decision.agent,
            actor=actor, squad=squad, decision_seq=decision_seq, conversation_id=conversation_id,
            incident_id=incident_id, details={"exec_argv": exec_argv},
        )
    try:
        result = executor.run(exec_argv, timeout=timeout, max_output=max_output)
    except BaseException as exc:
        with session_scope(sessions) as session:
            audit.record_interrupted(session, started_seq=started.seq, reason=f"executor failed: {exc!r}")
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


def redact_result(result: ExecResult) -> ExecResult:
    """``result`` with secrets in stdout and stderr replaced (same digest)."""
    stdout, found_out = redact(result.stdout)
    stderr, found_err = redact(result.stderr)
    if not found_out and not found_err:
        return result
    return replace(result, stdout=stdout, stderr=stderr)
