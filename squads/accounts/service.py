"""Accounts and sign-in: argon2id passwords, roles, server-side sessions, CSRF tokens.

Every account change and every sign-in (successful or not) is an audit record,
never with a password or a session secret in it.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from squads.audit.models import RecordKind
from squads.audit.chain import append, append_committed
from squads.accounts.credentials import matches, new_secret, secret_hash
from squads.storage.db import session_scope
from squads.accounts.models import Role, User, WebSession
from squads.accounts.ratelimit import SignInLimits, prune, reserve, succeeded

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 12
SESSION_LIFETIME = timedelta(hours=12)
# OWASP's argon2id recommendation (m=19 MiB, t=2, p=1): about 30 ms here, cheap to serve, dear to guess.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
DEFAULT_LIMITS = SignInLimits()
# Verified when the username does not exist, so a miss costs what a wrong password costs.
_DECOY_HASH = HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """An account request was refused; the message says why and what to do."""


class WrongCurrentPassword(AccountError):
    """A password change whose current password is wrong: a guess, throttled like a sign-in."""


class SignInError(ValueError):
    """The same message for every failed sign-in: no hint whether the user exists."""


@dataclass(frozen=True)
class FirstAdmin:
    """The admin made on first start, with its one-time password (printed once, never stored)."""

    username: str
    password: str


@dataclass(frozen=True)
class SignedIn:
    """A new browser session: the cookie value is shown to the browser once."""

    cookie: str
    csrf_token: str
    user: User
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def check_password(password: str, *, username: str) -> None:
    """Refuse a password that is too short or is the username; say what is needed."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("the password is longer than 1,024 characters")
    if username.lower() in password.lower():
        raise AccountError("the password must not contain the username")


def _audit(session: Session, *, actor: str | None, user: User, action: str, **details: object) -> None:
    append(session, kind=RecordKind.USER_ADMIN, actor=actor,
           details={"action": action, "user": user.username, "role": user.role, **details})


def create_user(
    session: Session, *, username: str, password: str, role: Role, actor: str | None, must_change: bool = False
) -> User:
    """A new account (audited). Usernames are lowercase letters, digits, '.', '_', '-'."""
    if not USERNAME.fullmatch(username):
        raise AccountError(f"username {username!r}: use 1-64 lowercase letters, digits, '.', '_' or '-'")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"a user named {username!r} already exists")
    check_password(password, username=username)
    now = _now().isoformat()
    user = User(username=username, password_hash=HASHER.hash(password), role=Role(role).value,
                must_change_password=must_change, disabled=False, created_at=now, created_by=actor,
                password_changed_at=now)
    session.add(user)
    session.flush()
    _audit(session, actor=actor, user=user, action="created")
    return user


def ensure_first_admin(session: Session) -> FirstAdmin | None:
    """On a database with no users, create ``admin`` with a random password that must be changed."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    password = secrets.token_urlsafe(12)
    create_user(session, username="admin", password=password, role=Role.ADMIN, actor="first start", must_change=True)
    return FirstAdmin("admin", password)


def find_user(session: Session, username: str) -> User:
    """The user called ``username`` or ``AccountError``."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}; `squads user list` shows them")
    return user


def list_users(session: Session) -> list[User]:
    """Every account, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


def set_role(session: Session, *, username: str, role: Role, actor: str | None) -> User:
    """Change a user's role (audited); the last admin cannot lose the role."""
    user = find_user(session, username)
    if user.role == Role.ADMIN.value and role is not Role.ADMIN and _admins(session) <= 1:
        raise AccountError(f"{username} is the only admin; make another admin first")
    before, user.role = user.role, Role(role).value
    _audit(session, actor=actor, user=user, action="role_changed", before=before)
    return user


def set_disabled(session: Session, *, username: str, disabled: bool, actor: str | None) -> User:
    """Disable (or enable) an account; its sessions end at once (audited)."""
    user = find_user(session, username)
    if disabled and user.role == Role.ADMIN.value and not user.disabled and _admins(session) <= 1:
        raise AccountError(f"{username} is the only admin; make another admin first")
    user.disabled = disabled
    if disabled:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    _audit(session, actor=actor, user=user, action="disabled" if disabled else "enabled")
    return user


def _admins(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN.value, User.disabled.is_(False))
    ) or 0


def change_password(session: Session, *, user: User, current: str, new: str) -> None:
    """The user's own change: the current password is required, and other sessions end."""
    if not _verify(user.password_hash, current):
        raise WrongCurrentPassword("the current password is wrong")
    if new == current:
        raise AccountError("choose a password different from the current one")
    _store_password(session, user=user, password=new, actor=user.username, must_change=False)


def reset_password(session: Session, *, username: str, actor: str | None) -> str:
    """An admin's reset: a random password the user must change at next sign-in (returned once)."""
    user = find_user(session, username)
    password = secrets.token_urlsafe(12)
    _store_password(session, user=user, password=password, actor=actor, must_change=True)
    return password


def _store_password(session: Session, *, user: User, password: str, actor: str | None, must_change: bool) -> None:
    check_password(password, username=user.username)
    user.password_hash = HASHER.hash(password)
    user.must_change_password = must_change
    user.password_changed_at = _now().isoformat()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    _audit(session, actor=actor, user=user, action="password_changed" if actor == user.username else "password_reset")


def _verify(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class SignInThrottled(SignInError):
    """Too many recent attempts for this account or address; the password was not checked."""

    def __init__(self, wait_s: float) -> None:
        self.retry_after = max(1, int(wait_s) + 1)
        super().__init__(f"too many failed sign-ins; try again in {self.retry_after} seconds")


def sign_in(
    sessions: sessionmaker[Session], *, username: str, password: str, peer: str, user_agent: str = "",
    limits: SignInLimits = DEFAULT_LIMITS,
) -> SignedIn:
    """Check the password (throttled) and open a session.

    Every attempt is a ``sign_in`` audit record. A failure's record is committed
    in its own transaction before ``SignInError`` is raised, so no caller's
    rollback can lose it. No transaction is held while the hash is verified."""
    claimed = username[:64]
    try:
        wait = reserve(sessions, username=claimed, peer=peer, limits=limits)
        if wait is not None:
            _failed(sessions, claimed=claimed, peer=peer, reason="throttled")
            raise SignInThrottled(wait)
        with sessions() as reader:
            user = reader.scalar(select(User).where(User.username == claimed))
            user_id, stored, disabled = (user.id, user.password_hash, user.disabled) if user else (None, None, False)
        ok = _verify(stored or _DECOY_HASH, password[:1024]) and user_id is not None
        if not ok or disabled:
            _failed(sessions, claimed=claimed, peer=peer, reason="disabled" if ok else "wrong credentials")
            raise SignInError("wrong username or password")
        with session_scope(sessions) as session:
            user = session.get(User, user_id)
            if user is None or user.disabled or user.password_hash != stored:
                signed = None  # changed while the hash was checked: the checked password may be stale
            else:
                if HASHER.check_needs_rehash(user.password_hash):
                    user.password_hash = HASHER.hash(password)
                signed = open_session(session, user=user, peer=peer, user_agent=user_agent)
        if signed is None:
            _failed(sessions, claimed=claimed, peer=peer, reason="account changed during sign-in")
            raise SignInError("wrong username or password")
        succeeded(sessions, username=claimed, peer=peer, limits=limits)
        return signed
    finally:
        prune(sessions, limits=limits)


def _failed(sessions: sessionmaker[Session], *, claimed: str, peer: str, reason: str) -> None:
    append_committed(sessions, kind=RecordKind.SIGN_IN, actor=claimed, decision="failed",
                     details={"peer": peer, "reason": reason})


def open_session(session: Session, *, user: User, peer: str, user_agent: str = "") -> SignedIn:
    """A new browser session for ``user``, whose identity the caller has just proved (audited)."""
    secret = new_secret()
    expires = _now() + SESSION_LIFETIME
    record = WebSession(id=uuid.uuid4().hex, secret_sha256=secret_hash(secret), user_id=user.id,
                        csrf_token=secrets.token_urlsafe(32), created_at=_now().isoformat(),
                        expires_at=expires.isoformat(), user_agent=user_agent[:200] or None)
    session.add(record)
    session.flush()
    append(session, kind=RecordKind.SIGN_IN, actor=user.username, decision="signed_in",
           details={"peer": peer, "session": record.id})
    return SignedIn(cookie=f"{record.id}.{secret}", csrf_token=record.csrf_token, user=user, expires_at=expires)


def session_user(session: Session, cookie: str) -> tuple[User, WebSession] | None:
    """The user behind a session cookie, or None (unknown, expired, disabled); constant time."""
    sid, _, secret = cookie.partition(".")
    record = session.get(WebSession, sid[:32]) if sid else None
    if not matches(record.secret_sha256 if record else None, secret) or record is None:
        return None
    if datetime.fromisoformat(record.expires_at) <= _now():
        session.delete(record)
        return None
    user = session.get(User, record.user_id)
    if user is None or user.disabled:
        return None
    return user, record


def sign_out(session: Session, *, web_session: WebSession, user: User) -> None:
    """End the session (audited)."""
    session.delete(web_session)
    append(session, kind=RecordKind.SIGN_IN, actor=user.username, decision="signed_out",
           details={"session": web_session.id})


def csrf_ok(web_session: WebSession, token: str) -> bool:
    """Whether a form's CSRF token is this session's (constant time)."""
    return secrets.compare_digest(web_session.csrf_token, token or "")
