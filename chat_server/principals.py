"""Who is asking: a signed-in browser (session cookie) or an API token, and with which role.

Every page and API route depends on ``require(role)``. A request without
credentials gets 401 under ``/api/`` and a redirect to the sign-in page
elsewhere; a role that is too low gets 403 saying which role is needed. A
browser session must send its CSRF token with every state-changing request;
a bearer token is not ambient, so it need not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError

from squads.accounts.api_tokens import TokenError, authenticate_token, stamp_token, token_needs_stamp
from squads.storage.db import session_scope
from squads.storage.service import Database
from squads.accounts.models import Role, User
from squads.accounts.service import csrf_ok, session_user

log = logging.getLogger("squads.api")
bearer = HTTPBearer(auto_error=False)
SESSION_COOKIE = "squads_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller. ``name`` is what the audit log records as the actor."""

    name: str
    role: Role
    user_id: int | None = None
    session_id: str | None = None  # set for a signed-in browser
    csrf_token: str | None = None
    must_change_password: bool = False


class NotSignedIn(Exception):
    """No valid credentials: 401 for the API, the sign-in page for a browser."""


class PasswordChangeRequired(Exception):
    """The user signed in with a one-time password and must choose their own first."""


def _from_user(user: User, **extra: object) -> Principal:
    return Principal(name=user.username, role=Role(user.role), user_id=user.id,
                     must_change_password=user.must_change_password, **extra)  # type: ignore[arg-type]


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, from a bearer token or the session cookie; ``NotSignedIn`` otherwise.

    Lookups are primary-key reads on a read-only session, done on the event loop:
    cheaper than the thread hops a sync dependency costs on every request."""
    db = request.app.state.context.db
    if credentials is not None:
        return _token_principal(db, credentials)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NotSignedIn()
    with db.readers() as session:
        found = session_user(session, cookie[:200])
        if found is None:
            raise NotSignedIn()
        user, web_session = found
        principal = _from_user(user, session_id=web_session.id, csrf_token=web_session.csrf_token)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER) or await _form_token(request)
            if not csrf_ok(web_session, sent):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page and retry")
    return principal


async def _form_token(request: Request) -> str:
    if not request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded",
                                                              "multipart/form-data")):
        return ""
    form = await request.form()  # Starlette keeps the parsed form for the route
    value = form.get("csrf_token")
    return value if isinstance(value, str) else ""


def _token_principal(db: Database, credentials: HTTPAuthorizationCredentials) -> Principal:
    if credentials.scheme.lower() != "bearer":
        raise NotSignedIn()
    with db.readers() as session:
        try:
            token = authenticate_token(session, credentials.credentials, stamp=False)
        except TokenError:
            raise NotSignedIn() from None
        user = session.get(User, token.user_id) if token.user_id is not None else None
        if token.user_id is not None and (user is None or user.disabled):
            raise NotSignedIn()
        principal = _from_user(user) if user is not None else Principal(name=f"token:{token.name}", role=Role.ADMIN)
    if token_needs_stamp(token):
        try:
            with session_scope(db.sessions) as session:
                stamp_token(session, token.id)
        except OperationalError:
            log.warning("could not record the last use of API token %s (database busy)", token.name)
    return principal


def require(role: Role, *, allow_password_change: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if their role includes ``role``."""

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.must_change_password and not allow_password_change:
            raise PasswordChangeRequired()
        if not principal.role.allows(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs the {role.value} role; {principal.name} is {principal.role.value}",
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Engineer = Annotated[Principal, Depends(require(Role.ENGINEER))]
Approver = Annotated[Principal, Depends(require(Role.APPROVER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
SignedIn = Annotated[Principal, Depends(require(Role.VIEWER, allow_password_change=True))]
