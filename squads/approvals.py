"""Held commands waiting for an approver: the queue the web's ``/approvals`` page and
``squads approval`` both read, and the check that a named account may approve.

Approving itself is ``Conversation.resolve_approval`` for both, so a decision from the
terminal is audited exactly like one from the web (who, when, why; the requester can never
approve their own request; a second resolution is refused by the audit log).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from squads.accounts.models import Role, User
from squads.accounts.service import AccountError, find_user
from squads.runtime import approval_expired
from transcripts.models import ConversationRecord


class ApprovalLookupError(LookupError):
    """No pending request with that id; the message says where to look."""


def pending_approvals(session: Session, *, now: datetime, ttl_s: float) -> list[dict[str, Any]]:
    """Every held command still waiting and not expired, across conversations, newest first.

    Each is the request as the conversation stored it, plus ``conversation``, ``squad`` and
    ``title``. Only conversations touched within ``ttl_s`` can hold one that has not expired."""
    since = (now - timedelta(seconds=ttl_s)).isoformat()
    pending: list[dict[str, Any]] = []
    for record in session.scalars(select(ConversationRecord).where(ConversationRecord.updated_at >= since)):
        for approval in json.loads(record.state or "{}").get("approvals", []):
            if approval.get("status") == "pending" and not approval_expired(approval, now=now):
                pending.append({**approval, "conversation": record.id, "squad": record.squad, "title": record.title})
    pending.sort(key=lambda a: str(a.get("requested_at", "")), reverse=True)
    return pending


def find_pending(session: Session, approval_id: str, *, now: datetime, ttl_s: float) -> dict[str, Any]:
    """The pending request ``approval_id`` (its audit decision's sequence number, as listed).

    Ids are audit sequence numbers, unique across conversations, so no conversation id is needed."""
    for approval in pending_approvals(session, now=now, ttl_s=ttl_s):
        if str(approval.get("id")) == approval_id:
            return approval
    raise ApprovalLookupError(
        f"no pending approval {approval_id!r} (it may have been resolved, or expired after {ttl_s:g} s); "
        "`squads approval list` shows the waiting ones"
    )


def approver_account(session: Session, username: str) -> User:
    """The enabled account ``username`` if its role may approve, else ``AccountError`` saying why."""
    user = find_user(session, username)
    if user.disabled:
        raise AccountError(f"user {username!r} is disabled")
    if not Role(user.role).allows(Role.APPROVER):
        raise AccountError(f"user {username!r} has the role {user.role}; approving needs the approver or admin role")
    if user.must_change_password:
        raise AccountError(f"user {username!r} must first replace the one-time password (sign in on the web)")
    return user
