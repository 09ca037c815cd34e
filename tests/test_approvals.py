"""Held commands: approving runs them through the normal path, rejecting never does."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from squads.audit.models import AuditRecord, RecordKind
from squads.audit.verify import verify
from squads.nodes.models import NodeConfig
from permissions.service import build_engine
from squads.runtime import ApprovalError, Conversation, RuntimeConfig
from squads.service import default_grants, load_squads
from squads.storage.service import Database
from tools.executors.fixture import Fixture, FixtureExecutor
from transcripts.models import EventKind


def _conversation(db: Database) -> tuple[Conversation, FixtureExecutor]:
    squads = load_squads()
    executor = FixtureExecutor([Fixture(run="systemctl restart nginx", stdout="")])
    config = RuntimeConfig(
        sessions=db.sessions,
        engine=build_engine(defaults=default_grants(squads.values()), site=()),
        nodes={"web-1": NodeConfig(name="web-1")},
        executor_for=lambda node: executor,
    )
    return Conversation.start(config=config, squad=squads["webserver"], node="web-1", actor="alice"), executor


def _held(conversation: Conversation) -> str:
    events = list(conversation.handle("please restart nginx"))
    requested = [e for e in events if e.kind is EventKind.APPROVAL_REQUESTED]
    assert len(requested) == 1, [e.kind for e in events]
    assert not [e for e in events if e.kind is EventKind.TOOL_OUTPUT]
    return str(requested[0].data["id"])


def test_requester_cannot_approve_their_own_command(db: Database) -> None:
    conversation, executor = _conversation(db)
    approval_id = _held(conversation)
    with pytest.raises(ApprovalError, match="cannot approve"):
        list(conversation.resolve_approval(approval_id, approver="alice", approved=True))
    assert executor.calls == []


def test_approved_command_runs_once_and_is_audited(db: Database) -> None:
    conversation, executor = _conversation(db)
    approval_id = _held(conversation)
    events = list(conversation.resolve_approval(approval_id, approver="bob", approved=True, reason="planned"))
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.APPROVAL_RESOLVED and events[0].data["by"] == "bob"
    assert EventKind.TOOL_OUTPUT in kinds
    assert executor.calls == [["/usr/bin/systemctl", "restart", "nginx"]]
    with pytest.raises(ApprovalError, match="no pending approval"):
        list(conversation.resolve_approval(approval_id, approver="bob", approved=True))
    with db.sessions() as session:
        records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        resolved = [r for r in records if r.kind == RecordKind.APPROVAL_RESOLVED]
        assert [(r.actor, r.decision, r.ref_seq) for r in resolved] == [("bob", "approved", int(approval_id))]
        started = [r for r in records if r.kind == RecordKind.EXECUTION_STARTED]
        assert len(started) == 1
        # The command was decided again at approval time; the execution points at that decision.
        fresh = next(r for r in records if r.seq == started[0].ref_seq)
        assert fresh.kind == RecordKind.DECISION and fresh.seq > int(approval_id)
        assert (fresh.actor, started[0].actor) == ("bob", "bob")
        assert verify(session).ok


def test_a_second_process_cannot_approve_the_same_request_again(db: Database) -> None:
    conversation, executor = _conversation(db)
    approval_id = _held(conversation)
    # Another process (a web worker) loads the same conversation before the first approval lands.
    stale = Conversation(config=conversation.config, squad=conversation.squad, conversation_id=conversation.id, actor="carol")
    list(conversation.resolve_approval(approval_id, approver="bob", approved=True))
    with pytest.raises(ApprovalError, match="already resolved"):
        list(stale.resolve_approval(approval_id, approver="dave", approved=True))
    assert executor.calls == [["/usr/bin/systemctl", "restart", "nginx"]]


def test_the_requester_cannot_approve_from_another_session_either(db: Database) -> None:
    conversation, executor = _conversation(db)
    approval_id = _held(conversation)
    other = Conversation(config=conversation.config, squad=conversation.squad, conversation_id=conversation.id, actor="bob")
    with pytest.raises(ApprovalError, match="cannot approve"):
        list(other.resolve_approval(approval_id, approver="alice", approved=True))
    assert executor.calls == []


def test_rejected_command_never_runs(db: Database) -> None:
    conversation, executor = _conversation(db)
    approval_id = _held(conversation)
    events = list(conversation.resolve_approval(approval_id, approver="bob", approved=False, reason="not now"))
    assert events[0].data["status"] == "rejected"
    assert EventKind.TOOL_OUTPUT not in [e.kind for e in events]
    assert executor.calls == []


def test_an_approval_expires_after_the_configured_time(db: Database) -> None:
    from datetime import UTC, datetime, timedelta

    clock = [datetime(2026, 11, 27, 3, 0, tzinfo=UTC)]
    conversation, executor = _conversation(db)
    conversation.config.now = lambda: clock[0]
    conversation.config.approval_ttl_s = 600
    held = [e for e in conversation.handle("please restart nginx") if e.kind is EventKind.APPROVAL_REQUESTED]
    assert held and held[0].data["expires_at"] == "2026-11-27T03:10:00+00:00"
    clock[0] += timedelta(minutes=11)
    with pytest.raises(ApprovalError, match="expired at 2026-11-27T03:10:00"):
        list(conversation.resolve_approval(held[0].data["id"], approver="bob", approved=True))
    assert executor.calls == []
