"""Making, checking and revoking API tokens.

A token reads ``sqa_<id>.<secret>``: the id finds the row, the secret's hash is
compared in constant time, so a guess can neither be timed nor looked up.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from squads.accounts.token_models import ApiToken
from squads.accounts.credentials import matches, new_secret, secret_hash
from squads.storage.lookup import AmbiguousId, id_by_prefix

TOKEN = re.compile(r"sqa_(?P<id>[0-9a-f]{32})\.(?P<secret>[A-Za-z0-9_-]{20,100})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,98}[A-Za-z0-9]|[A-Za-z0-9]")


class TokenError(ValueError):
    """A token request was refused, or a token did not authenticate; the message says which."""


@dataclass(frozen=True)
class IssuedApiToken:
    """A new token, shown once."""

    id: str
    name: str
    token: str


def create_api_token(
    session: Session, *, name: str, actor: str | None, user_id: int | None = None
) -> IssuedApiToken:
    """A new API token called ``name``; the whole token is returned once.

    With ``user_id`` it is that user's personal token and acts with their role."""
    if not NAME.fullmatch(name):
        raise TokenError(f"token name {name!r}: use letters, digits, spaces, '.', '_' or '-' (1-100 characters)")
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise TokenError(f"a token named {name!r} exists; revoke it or choose another name")
    token_id, secret = uuid.uuid4().hex, new_secret()
    session.add(ApiToken(id=token_id, name=name, secret_sha256=secret_hash(secret),
                         created_at=datetime.now(UTC).isoformat(), created_by=actor, revoked=False,
                         user_id=user_id))
    return IssuedApiToken(id=token_id, name=name, token=f"sqa_{token_id}.{secret}")


def authenticate_token(session: Session, token: str, *, stamp: bool = True) -> ApiToken:
    """The token's record, or ``TokenError`` (the same message for every kind of wrong token).

    ``stamp`` records the use (at most once a minute); a caller on a read-only
    session passes False and stamps in a write session of its own."""
    parsed = TOKEN.fullmatch(token.strip())
    record = session.get(ApiToken, parsed["id"]) if parsed else None
    secret = parsed["secret"] if parsed else ""
    if not matches(record.secret_sha256 if record else None, secret) or record is None or record.revoked:
        raise TokenError("invalid or revoked API token")
    if stamp and token_needs_stamp(record):
        record.last_used = datetime.now(UTC).isoformat()
    return record


def token_needs_stamp(record: ApiToken) -> bool:
    """Whether the token's last use is unrecorded or over a minute old.

    "Last used" is for spotting stale tokens; a write on every request would
    cost each API call a commit."""
    return record.last_used is None or datetime.now(UTC) - datetime.fromisoformat(record.last_used) > timedelta(
        minutes=1
    )


def stamp_token(session: Session, token_id: str) -> None:
    """Record that the token was used now."""
    record = session.get(ApiToken, token_id)
    if record is not None:
        record.last_used = datetime.now(UTC).isoformat()


def revoke_api_token(session: Session, *, ref: str) -> ApiToken:
    """Revoke a token by id or name."""
    record = session.get(ApiToken, ref) or session.scalar(select(ApiToken).where(ApiToken.name == ref))
    if record is None:
        raise TokenError(f"no API token {ref!r}; `squads token list` shows them")
    record.revoked = True
    return record


def resolve_token_ref(session: Session, ref: str) -> str:
    """A token name, id, or unique id prefix (at least 4 characters), as the exact id or name.

    For people typing at the CLI; ``TokenError`` lists the ids when a prefix is ambiguous."""
    if session.scalar(select(ApiToken.id).where(ApiToken.name == ref)) is not None:
        return ref
    try:
        return id_by_prefix(session, ApiToken.id, ref, what="API token") or ref
    except AmbiguousId as exc:
        raise TokenError(str(exc)) from None


def list_api_tokens(session: Session, *, user_id: int | None = None) -> list[ApiToken]:
    """Every token (never its secret), by name; only ``user_id``'s personal ones when given."""
    stmt = select(ApiToken).order_by(ApiToken.name)
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return list(session.scalars(stmt))


def revoke_own_token(session: Session, *, token_id: str, user_id: int) -> ApiToken:
    """Revoke one of ``user_id``'s personal tokens; someone else's is "not found", never revoked."""
    record = session.get(ApiToken, token_id)
    if record is None or record.user_id != user_id:
        raise TokenError("no such token of yours")
    record.revoked = True
    return record
