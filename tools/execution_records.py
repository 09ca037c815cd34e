"""The audit records of the decide → audit → run path, and what became of each execution.

:mod:`tools.execution` writes a decision record, a started record before the command runs,
and a finished or interrupted one after; approvals and the node's own refusals sit beside
them. Every record goes through :func:`squads.audit.chain.append`. Argv and reasons are
redacted first (the log is permanent); the raw argv's SHA-256 proves what it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from permissions.models import Decision
from squads.audit.chain import append, lock_chain
from squads.audit.keys import canonical_json
from squads.audit.models import AuditRecord, RecordKind
from squads.textsafety.redact import redact
from tools.executors.base import ExecResult

_CLOSING_KINDS = (RecordKind.EXECUTION_FINISHED.value, RecordKind.EXECUTION_INTERRUPTED.value)


def _scrub(argv: Sequence[str], details: Mapping[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    """argv with secrets redacted (the log is permanent); the raw argv's SHA-256 proves what it was."""
    clean = [redact(arg)[0] for arg in argv]
    extra = dict(details or {})
    if clean != list(argv):
        extra["argv_sha256"] = hashlib.sha256(canonical_json(list(argv))).hexdigest()
        if "exec_argv" in extra:
            extra["exec_argv"] = [redact(str(arg))[0] for arg in extra["exec_argv"]]
    return clean, extra


def record_decision(
    session: Session,
    *,
    decision: Decision,
    actor: str | None,
    squad: str | None,
    conversation_id: str | None = None,
    incident_id: str | None = None,
) -> AuditRecord:
    """Record a policy decision (allow, deny or needs_approval) and its reason."""
    verdict = decision.verdict
    argv, details = _scrub(decision.argv, {"grant": decision.grant, "program_path": decision.program_path})
    return append(
        session,
        kind=RecordKind.DECISION,
        actor=actor,
        squad=squad,
        agent=decision.agent,
        node=decision.node,
        argv=argv,
        decision=str(getattr(verdict, "value", verdict)),
        rule=decision.rule,
        reason=redact(decision.reason)[0],
        conversation_id=conversation_id,
        incident_id=incident_id,
        details=details,
    )


def _context_of(record: AuditRecord) -> dict[str, Any]:
    # Follow-up records repeat who/where/what so each line reads on its own.
    return {
        "actor": record.actor,
        "squad": record.squad,
        "agent": record.agent,
        "node": record.node,
        "argv": None if record.argv is None else json.loads(record.argv),
        "conversation_id": record.conversation_id,
        "incident_id": record.incident_id,
    }


def _get(session: Session, seq: int, kind: RecordKind) -> AuditRecord:
    record = session.get(AuditRecord, seq)
    if record is None or record.kind != kind.value:
        raise LookupError(f"record {seq} is not a {kind.value} record")
    return record


def record_approval(
    session: Session, *, decision_seq: int, approver: str, approved: bool, reason: str | None = None
) -> AuditRecord:
    """Record who approved (or rejected) a decision that needed approval.

    Refuses a decision that was a denial, one already resolved (so a command is
    approved, and run, at most once) and an approval by the person who asked."""
    held = _get(session, decision_seq, RecordKind.DECISION)
    if held.decision == "deny":
        raise ValueError(f"record {decision_seq} is a denial; there is nothing to approve")
    resolved = session.scalar(
        select(AuditRecord.seq).where(
            AuditRecord.kind == RecordKind.APPROVAL_RESOLVED.value, AuditRecord.ref_seq == decision_seq
        )
    )
    if resolved is not None:
        raise ValueError(f"decision {decision_seq} was already resolved (record {resolved})")
    if approved and held.actor and held.actor == approver:
        raise ValueError(f"{approver} asked for this command and cannot approve it; another approver must")
    return append(
        session,
        kind=RecordKind.APPROVAL_RESOLVED,
        **{**_context_of(held), "actor": approver},
        decision="approved" if approved else "rejected",
        rule=held.rule,
        reason=reason,
        ref_seq=decision_seq,
        details={"requested_by": held.actor},
    )


def record_started(
    session: Session,
    *,
    argv: Sequence[str],
    node: str | None,
    timeout_s: float,
    agent: str | None = None,
    actor: str | None = None,
    squad: str | None = None,
    decision_seq: int | None = None,
    conversation_id: str | None = None,
    incident_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Record that an execution is starting; commit it before running the command.

    ``timeout_s`` goes into ``details`` so :func:`sweep_interrupted` knows when
    a missing finished record means the executor died.
    """
    clean, scrubbed = _scrub(argv, details)
    return append(
        session,
        kind=RecordKind.EXECUTION_STARTED,
        actor=actor,
        squad=squad,
        agent=agent,
        node=node,
        argv=clean,
        conversation_id=conversation_id,
        incident_id=incident_id,
        ref_seq=decision_seq,
        details={**scrubbed, "timeout_s": float(timeout_s)},
    )


def record_finished(session: Session, *, started: AuditRecord, result: ExecResult) -> AuditRecord:
    """Record how an execution ended (an ``ExecResult`` or anything shaped like it)."""
    return append(
        session,
        kind=RecordKind.EXECUTION_FINISHED,
        **_context_of(started),
        ref_seq=started.seq,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        output_sha256=result.output_sha256 or None,
        stdout=result.stdout,
        stderr=result.stderr,
        truncated=result.truncated,
        details={
            "timed_out": bool(getattr(result, "timed_out", False)),
            "stdout_truncated": bool(getattr(result, "stdout_truncated", False)),
            "stderr_truncated": bool(getattr(result, "stderr_truncated", False)),
            **dict(getattr(result, "meta", None) or {}),
        },
    )


def record_interrupted(
    session: Session, *, started_seq: int, reason: str, details: Mapping[str, Any] | None = None
) -> AuditRecord:
    """Record that an execution will never report its end (crash, kill, lost node).

    ``details`` says more where it is known, e.g. ``{"ran": False}`` when the
    executor is certain the command never started (the node was offline)."""
    started = _get(session, started_seq, RecordKind.EXECUTION_STARTED)
    return append(
        session,
        kind=RecordKind.EXECUTION_INTERRUPTED,
        **_context_of(started),
        reason=reason,
        ref_seq=started_seq,
        details=dict(details or {}),
    )


def record_node_decision(
    session: Session, *, started_seq: int, verdict: str, rule: str, reason: str
) -> AuditRecord:
    """Record the node's own policy decision on a command the control plane allowed.

    The node agent decides again before it runs anything; when it refuses, this
    record stands beside the control plane's decision so both are on file."""
    started = _get(session, started_seq, RecordKind.EXECUTION_STARTED)
    return append(
        session,
        kind=RecordKind.DECISION,
        **_context_of(started),
        decision=verdict,
        rule=rule,
        reason=redact(reason)[0],
        ref_seq=started_seq,
        details={"source": "node", "node_policy": True},
    )


def open_executions(session: Session) -> list[AuditRecord]:
    """Started records that no finished or interrupted record refers to yet."""
    closer = aliased(AuditRecord)
    closed = exists().where(and_(closer.ref_seq == AuditRecord.seq, closer.kind.in_(_CLOSING_KINDS)))
    stmt = (
        select(AuditRecord)
        .where(AuditRecord.kind == RecordKind.EXECUTION_STARTED.value, ~closed)
        .order_by(AuditRecord.seq)
    )
    return list(session.scalars(stmt))


def sweep_interrupted(
    session: Session,
    *,
    now: datetime | None = None,
    grace_s: float = 60,
    default_timeout_s: float = 30.0,
) -> list[AuditRecord]:
    """Mark every execution overdue by its timeout plus ``grace_s`` as interrupted.

    ``now`` defaults to the current time (a naive ``now`` is taken as UTC).
    Returns the interrupted records appended (the caller commits).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # Take the append lock before looking, so a finished record being written
    # concurrently cannot also get an interrupted one.
    lock_chain(session.connection())
    swept = []
    for started in open_executions(session):
        timeout = json.loads(started.details or "{}").get("timeout_s", default_timeout_s)
        deadline = datetime.fromisoformat(started.ts) + timedelta(seconds=float(timeout) + grace_s)
        if now > deadline:
            reason = (
                f"no finished record {float(timeout):g}s (+{grace_s:g}s grace) after the start; "
                "the executor crashed, was killed or lost the node"
            )
            swept.append(record_interrupted(session, started_seq=started.seq, reason=reason))
    return swept


def execution_state(session: Session, seq: int) -> Literal["running", "finished", "interrupted"]:
    """What became of execution ``seq``: a finished record wins over an interrupted one."""
    _get(session, seq, RecordKind.EXECUTION_STARTED)
    kinds = set(
        session.scalars(
            select(AuditRecord.kind).where(AuditRecord.ref_seq == seq, AuditRecord.kind.in_(_CLOSING_KINDS))
        )
    )
    if RecordKind.EXECUTION_FINISHED.value in kinds:
        return "finished"
    return "interrupted" if kinds else "running"
