"""The one path from an argv to a result: decide, audit, run, audit.

Nothing reaches an executor without a decision recorded first, and every
execution leaves a started record before it runs, so a crash shows up as an
interrupted execution rather than a silent gap.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from squads.audit.models import AuditRecord
from permissions.engine import PolicyEngine
from permissions.models import Decision, NodeContext, Verdict
from squads.storage.db import session_scope
from tools.executors.base import (
    BatchRunner,
    ExecResult,
    Executor,
    ExecutorError,
    NodeRefused,
    NotRun,
    RunContext,
)
from squads.textsafety.redact import redact
from tools import execution_records


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """One command to run: what, as which agent, for whom, and within which limits.

    The same request goes to :func:`execute`, to :func:`execute_many` (one decision per
    target) and, once a held decision is approved, to :func:`run_decided`."""

    agent: str
    argv: Sequence[str]
    actor: str | None
    squad: str | None
    timeout: float
    max_output: int
    conversation_id: str | None = None
    incident_id: str | None = None

    def __post_init__(self) -> None:
        # Any sequence is frozen into a tuple, so the argv decided on is the one the request keeps.
        # A string stays a string: the policy refuses it, and the refusal is audited like any other.
        if not isinstance(self.argv, str | bytes):
            object.__setattr__(self, "argv", tuple(self.argv))

    def audit_context(self) -> dict[str, str | None]:
        """Who asked and where from, as every audit record of this request repeats it."""
        return {"actor": self.actor, "squad": self.squad, "conversation_id": self.conversation_id,
                "incident_id": self.incident_id}


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """A decision, its audit record, and the result when the command ran."""

    decision: Decision
    decision_seq: int
    result: ExecResult | None = None
    started_seq: int | None = None
    finished_seq: int | None = None
    error: ExecutorError | None = None  # allowed, but the executor gave no result (offline, refused, lost)


@dataclass(frozen=True, slots=True)
class Target:
    """One node of a fan-out: its policy context and the executor that reaches it."""

    node: NodeContext
    executor: Executor


@dataclass(frozen=True, slots=True)
class _Start:
    decision_seq: int
    started: AuditRecord
    context: RunContext


def execute(
    *,
    request: ExecutionRequest,
    sessions: sessionmaker[Session],
    engine: PolicyEngine,
    executor: Executor,
    node: NodeContext,
) -> CommandOutcome:
    """Decide the request's argv for its agent on ``node``; run it only when allowed.

    The decision and the start are committed in one transaction before the
    executor is called; an executor that raises leaves an interrupted record."""
    (outcome,) = execute_many(
        request=request, targets=[Target(node=node, executor=executor)], sessions=sessions, engine=engine,
        raise_errors=True,
    )
    return outcome


def execute_many(
    *,
    request: ExecutionRequest,
    targets: Sequence[Target],
    sessions: sessionmaker[Session],
    engine: PolicyEngine,
    parallel: int = 64,
    raise_errors: bool = False,
) -> list[CommandOutcome]:
    """Run the request's argv on every target, ``parallel`` at a time; answers in target order.

    Each node gets its own decision and audit records. Every decision and every
    start is committed (one transaction) before any executor is called, and every
    end is recorded in one transaction after the last answer, so a fan-out to a
    thousand nodes costs two commits, not three thousand. A node that cannot run
    it (offline, refused, lost) has its ``ExecutorError`` in the outcome's
    ``error``, or it is raised when ``raise_errors``."""
    context = request.audit_context()
    timeout, max_output = request.timeout, request.max_output
    decisions = [engine.decide(agent=request.agent, node=t.node, argv=request.argv) for t in targets]
    starts: list[_Start | None] = []
    with session_scope(sessions) as session:
        seqs = [execution_records.record_decision(session, decision=d, **context).seq for d in decisions]
        for decision, seq in zip(decisions, seqs, strict=True):
            starts.append(_start(session, decision, seq, timeout, context) if decision.allowed else None)

    def run(i: int) -> ExecResult | BaseException:
        start = starts[i]
        assert start is not None
        try:
            return targets[i].executor.run(
                start.context.decision.exec_argv(), timeout=timeout, max_output=max_output, context=start.context
            )
        except BaseException as exc:  # noqa: BLE001 - recorded below, then raised or returned
            return exc

    allowed = [i for i, s in enumerate(starts) if s is not None]
    answers: dict[int, ExecResult | BaseException] = {}
    batches: dict[int, tuple[BatchRunner, list[int]]] = {}
    for i in allowed:
        runner = getattr(targets[i].executor, "batch", None)
        if runner is not None and len(allowed) > 1:
            batches.setdefault(id(runner), (runner, []))[1].append(i)
    for runner, indices in batches.values():
        runs = [(targets[i].executor, starts[i].context) for i in indices]  # type: ignore[union-attr]
        answers.update(zip(indices, runner.run_batch(runs, timeout=timeout, max_output=max_output), strict=True))
    rest = [i for i in allowed if i not in answers]
    if len(rest) <= 1:
        answers.update({i: run(i) for i in rest})
    else:
        with ThreadPoolExecutor(max_workers=min(parallel, len(rest)), thread_name_prefix="fanout") as pool:
            answers.update(zip(rest, pool.map(run, rest), strict=True))
    outcomes: list[CommandOutcome] = []
    with session_scope(sessions) as session:
        for i, decision in enumerate(decisions):
            start = starts[i]
            if start is None:
                outcomes.append(CommandOutcome(decision=decision, decision_seq=seqs[i]))
                continue
            answer = answers[i]
            if isinstance(answer, BaseException):
                _record_failure(session, started_seq=start.started.seq, exc=answer)
                error = answer if isinstance(answer, ExecutorError) else ExecutorError(str(answer))
                outcomes.append(CommandOutcome(decision=decision, decision_seq=seqs[i], error=error,
                                               started_seq=start.started.seq))
                continue
            result = redact_result(answer)
            finished = execution_records.record_finished(session, started=start.started, result=result)
            outcomes.append(CommandOutcome(decision=decision, decision_seq=seqs[i], result=result,
                                           started_seq=start.started.seq, finished_seq=finished.seq))
    if raise_errors:
        for i in allowed:
            answer = answers[i]
            if isinstance(answer, BaseException):
                raise answer
    return outcomes


def _start(
    session: Session, decision: Decision, decision_seq: int, timeout: float, context: dict[str, Any],
    approved_by: str | None = None,
) -> _Start:
    """The started record of an allowed (or approved) decision, with the request id it runs under."""
    if decision.verdict is Verdict.DENY:
        raise ValueError(f"refusing to run a denied command: {decision.reason}")
    exec_argv = decision.exec_argv()
    request_id = uuid.uuid4().hex
    started = execution_records.record_started(
        session, argv=list(decision.argv), node=decision.node, timeout_s=timeout, agent=decision.agent,
        decision_seq=decision_seq, details={"exec_argv": exec_argv, "request_id": request_id}, **context,
    )
    return _Start(decision_seq, started, RunContext(decision=decision, request_id=request_id, approved_by=approved_by))


def run_decided(
    *,
    request: ExecutionRequest,
    sessions: sessionmaker[Session],
    executor: Executor,
    decision: Decision,
    decision_seq: int,
    approved_by: str | None = None,
) -> CommandOutcome:
    """Run an allowed (or approved) decision of ``request`` with start and finish records.

    Every run gets a request id (in the started record) that a node agent uses
    to run it at most once. An executor that raises leaves an interrupted record
    saying why, and the node's own refusal is recorded as a decision of its own.
    A decision about another agent or argv than the request's is refused before anything
    is recorded: its records would name one command and run another's context."""
    if decision.agent != request.agent or tuple(decision.argv) != tuple(request.argv):
        raise ValueError(
            f"the decision is for {decision.agent} running {list(decision.argv)}, the request for "
            f"{request.agent} running {list(request.argv)}; decide the request's own argv first"
        )
    context = request.audit_context()
    timeout, max_output = request.timeout, request.max_output
    with session_scope(sessions) as session:
        start = _start(session, decision, decision_seq, timeout, context, approved_by)
    try:
        result = executor.run(
            start.context.decision.exec_argv(), timeout=timeout, max_output=max_output, context=start.context
        )
    except BaseException as exc:
        with session_scope(sessions) as session:
            _record_failure(session, started_seq=start.started.seq, exc=exc)
        raise
    # Secrets the command printed never leave this function: the audit record and
    # every caller get the redacted text; output_sha256 still proves the raw bytes.
    result = redact_result(result)
    with session_scope(sessions) as session:
        finished = execution_records.record_finished(session, started=start.started, result=result)
    return CommandOutcome(
        decision=decision, decision_seq=decision_seq, result=result,
        started_seq=start.started.seq, finished_seq=finished.seq,
    )


def _record_failure(session: Session, *, started_seq: int, exc: BaseException) -> None:
    """Close the started record of a run that gave no result, saying what is known about it."""
    if isinstance(exc, NodeRefused):
        execution_records.record_node_decision(session, started_seq=started_seq, verdict=exc.verdict, rule=exc.rule,
                                   reason=exc.reason)
    if isinstance(exc, NotRun):
        execution_records.record_interrupted(session, started_seq=started_seq, reason=str(exc), details={"ran": False})
    elif isinstance(exc, ExecutorError):
        execution_records.record_interrupted(session, started_seq=started_seq, reason=str(exc))
    else:
        execution_records.record_interrupted(session, started_seq=started_seq, reason=f"executor failed: {exc!r}")


def redact_result(result: ExecResult) -> ExecResult:
    """``result`` with secrets in stdout and stderr replaced (same digest)."""
    stdout, found_out = redact(result.stdout)
    stderr, found_err = redact(result.stderr)
    if not found_out and not found_err:
        return result
    return replace(result, stdout=stdout, stderr=stderr)
