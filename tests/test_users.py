"""Local accounts, roles, sign-in, sessions and throttling (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from squads.audit.models import AuditRecord
from squads.audit.verify import verify
from squads.storage.db import session_scope
from squads.storage.service import Database
from squads.accounts.models import Role, User, WebSession
from squads.accounts.service import (
    AccountError,
    SignInError,
    change_password,
    create_user,
    csrf_ok,
    ensure_first_admin,
    reset_password,
    session_user,
    set_disabled,
    set_role,
    sign_in,
    sign_out,
)

GOOD = "correct horse battery"


def records(db: Database, kind: str) -> list[AuditRecord]:
    with db.sessions() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.kind == kind).order_by(AuditRecord.seq)))


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.APPROVER) and Role.APPROVER.allows(Role.ENGINEER)
    assert not Role.VIEWER.allows(Role.ENGINEER) and not Role.ENGINEER.allows(Role.APPROVER)


@pytest.mark.parametrize(("username", "password", "message"), [
    ("Alice", GOOD, "lowercase"),
    ("a b", GOOD, "lowercase"),
    ("alice", "short", "at least 12"),
    ("alice", "xx-alice-password-xx", "must not contain the username"),
])
def test_bad_accounts_are_refused_with_a_reason(db: Database, username: str, password: str, message: str) -> None:
    with session_scope(db.sessions) as session, pytest.raises(AccountError, match=message):
        create_user(session, username=username, password=password, role=Role.ENGINEER, actor="t")


def test_an_account_is_audited_without_its_password(db: Database) -> None:
    with session_scope(db.sessions) as session:
        user = create_user(session, username="alice", password=GOOD, role=Role.ENGINEER, actor="admin")
        assert user.password_hash.startswith("$argon2id$") and GOOD not in user.password_hash
    with session_scope(db.sessions) as session, pytest.raises(AccountError, match="already exists"):
        create_user(session, username="alice", password=GOOD, role=Role.VIEWER, actor="admin")
    (created,) = records(db, "user_admin")
    assert json.loads(created.details) == {"action": "created", "user": "alice", "role": "engineer"}
    assert created.actor == "admin"
    with db.sessions() as session:
        dump = " ".join(str(r.details) + str(r.reason) for r in session.scalars(select(AuditRecord)))
    assert GOOD not in dump and "$argon2" not in dump


def test_the_first_admin_is_made_once_and_must_change_the_password(db: Database) -> None:
    with session_scope(db.sessions) as session:
        first = ensure_first_admin(session)
    assert first is not None and first.username == "admin" and len(first.password) >= 12
    with session_scope(db.sessions) as session:
        assert ensure_first_admin(session) is None
        admin = session.scalar(select(User).where(User.username == "admin"))
        assert admin is not None and admin.role == "admin" and admin.must_change_password
    signed = sign_in(db.sessions, username="admin", password=first.password, peer="127.0.0.1")
    assert signed.user.must_change_password
    with session_scope(db.sessions) as session:
        user = session.get(User, signed.user.id)
        assert user is not None
        change_password(session, user=user, current=first.password, new="a much better passphrase")
        assert not user.must_change_password
        # Changing the password ends every session, this one included.
        assert session_user(session, signed.cookie) is None


def test_sign_in_opens_a_session_and_every_attempt_is_audited(db: Database) -> None:
    with session_scope(db.sessions) as session:
        create_user(session, username="alice", password=GOOD, role=Role.ENGINEER, actor="t")
    for username, password in (("alice", "wrong password!!"), ("mallory", GOOD)):
        with pytest.raises(SignInError) as refused:
            sign_in(db.sessions, username=username, password=password, peer="10.0.0.9")
        assert str(refused.value) == "wrong username or password"  # the same words: no user enumeration
    signed = sign_in(db.sessions, username="alice", password=GOOD, peer="10.0.0.9", user_agent="pytest")
    cookie, csrf = signed.cookie, signed.csrf_token
    with session_scope(db.sessions) as session:
        found = session_user(session, cookie)
        assert found is not None and found[0].username == "alice"
        assert csrf_ok(found[1], csrf) and not csrf_ok(found[1], csrf[:-1] + "x") and not csrf_ok(found[1], "")
        assert session_user(session, cookie[:-2] + "xx") is None and session_user(session, "nonsense") is None
        stored = session.get(WebSession, cookie.split(".")[0])
        assert stored is not None and cookie.split(".")[1] not in stored.secret_sha256
        sign_out(session, web_session=found[1], user=found[0])
    with session_scope(db.sessions) as session:
        assert session_user(session, cookie) is None
    outcomes = [(r.actor, r.decision, json.loads(r.details).get("peer")) for r in records(db, "sign_in")]
    assert outcomes == [("alice", "failed", "10.0.0.9"), ("mallory", "failed", "10.0.0.9"),
                        ("alice", "signed_in", "10.0.0.9"), ("alice", "signed_out", None)]
    assert GOOD not in " ".join(str(r.details) for r in records(db, "sign_in"))
    with db.sessions() as session:
        assert verify(session).ok


def test_expired_sessions_and_disabled_users_are_signed_out(db: Database) -> None:
    with session_scope(db.sessions) as session:
        create_user(session, username="alice", password=GOOD, role=Role.ENGINEER, actor="t")
        create_user(session, username="root-ish", password=GOOD, role=Role.ADMIN, actor="t")
    first = sign_in(db.sessions, username="alice", password=GOOD, peer="p").cookie
    second = sign_in(db.sessions, username="alice", password=GOOD, peer="p").cookie
    with session_scope(db.sessions) as session:
        record = session.get(WebSession, first.split(".")[0])
        assert record is not None
        record.expires_at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with session_scope(db.sessions) as session:
        assert session_user(session, first) is None
        assert session_user(session, second) is not None
        set_disabled(session, username="alice", disabled=True, actor="root-ish")
    with session_scope(db.sessions) as session:
        assert session_user(session, second) is None
    with pytest.raises(SignInError):
        sign_in(db.sessions, username="alice", password=GOOD, peer="p")
    assert json.loads(records(db, "sign_in")[-1].details)["reason"] == "disabled"


def test_the_last_admin_keeps_the_role(db: Database) -> None:
    with session_scope(db.sessions) as session:
        create_user(session, username="boss", password=GOOD, role=Role.ADMIN, actor="t")
        with pytest.raises(AccountError, match="only admin"):
            set_role(session, username="boss", role=Role.VIEWER, actor="t")
        with pytest.raises(AccountError, match="only admin"):
            set_disabled(session, username="boss", disabled=True, actor="t")
        create_user(session, username="deputy", password=GOOD, role=Role.ADMIN, actor="t")
        assert set_role(session, username="boss", role=Role.VIEWER, actor="deputy").role == "viewer"
        with pytest.raises(AccountError, match="no user"):
            set_role(session, username="ghost", role=Role.VIEWER, actor="t")


def test_password_changes_need_the_current_one_and_resets_force_a_change(db: Database) -> None:
    with session_scope(db.sessions) as session:
        user = create_user(session, username="alice", password=GOOD, role=Role.ENGINEER, actor="t")
        with pytest.raises(AccountError, match="current password is wrong"):
            change_password(session, user=user, current="not it at all", new="another long passphrase")
        with pytest.raises(AccountError, match="different"):
            change_password(session, user=user, current=GOOD, new=GOOD)
        temporary = reset_password(session, username="alice", actor="admin")
        assert user.must_change_password
    with pytest.raises(SignInError):
        sign_in(db.sessions, username="alice", password=GOOD, peer="p")
    assert sign_in(db.sessions, username="alice", password=temporary, peer="p").user.must_change_password
    actions = [json.loads(r.details)["action"] for r in records(db, "user_admin")]
    assert actions == ["created", "password_reset"]


def test_user_cli_and_the_first_admin_announcement(tmp_path: Path) -> None:
    squads = Path(sys.executable).with_name("squads")
    env = {**os.environ, "SQUADS_DATA_DIR": str(tmp_path)}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(squads), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)

    made = cli("user", "create", "alice", "--role", "approver", "--password-stdin", stdin=GOOD + "\n")
    assert made.returncode == 0, made.stderr
    generated = cli("user", "create", "bob")
    assert generated.returncode == 0 and "one-time password" in generated.stdout
    assert cli("user", "create", "Bad Name", "--password-stdin", stdin=GOOD + "\n").returncode == 2
    listed = {r["username"]: r for r in json.loads(cli("user", "list", "--json").stdout)}
    assert listed["alice"]["role"] == "approver" and not listed["alice"]["must_change_password"]
    assert listed["bob"]["role"] == "engineer" and listed["bob"]["must_change_password"]
    assert "password_hash" not in listed["alice"]
    assert cli("user", "role", "bob", "viewer").returncode == 0
    assert cli("user", "disable", "bob").returncode == 0
    reset = cli("user", "reset-password", "alice")
    assert reset.returncode == 0 and "one-time password for alice" in reset.stdout
    listed = {r["username"]: r for r in json.loads(cli("user", "list", "--json").stdout)}
    assert listed["bob"]["role"] == "viewer" and listed["bob"]["disabled"]
    assert listed["alice"]["must_change_password"]
