"""What every API route depends on: a database session, the caller's API token, the hub."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from auth.models import ApiToken
from auth.service import TokenError, authenticate_token, stamp_token, token_needs_stamp
from nodes.hub import Hub
from squads.context import AppContext
from storage.db import session_scope

log = logging.getLogger("squads.api")
bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    """A database session committed when the request succeeds."""
    with session_scope(request.app.state.context.db.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_reader(request: Request) -> AsyncIterator[Session]:
    """A read-only session: on SQLite it never holds, or waits for, the writer lock.

    Async because opening one does no I/O; the sync route that uses it runs in the
    thread pool anyway, and a sync dependency would cost two more thread hops."""
    with request.app.state.context.db.readers() as session:
        yield session


ReaderDep = Annotated[Session, Depends(get_reader)]


async def current_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiToken:
    """The caller's API token, or 401.

    It uses a session of its own, closed before the route runs: a route that
    runs commands must not hold a database transaction while it waits on nodes.
    The lookup is one primary-key read on a read-only session, done on the event
    loop: cheaper than the two thread hops a sync dependency costs every request."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED, "an API token is required: Authorization: Bearer sqa_... (squads token create)",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    db = request.app.state.context.db
    try:
        with db.readers() as session:
            token = authenticate_token(session, credentials.credentials, stamp=False)
            session.expunge(token)
    except TokenError:
        raise unauthorized from None
    if token_needs_stamp(token):
        try:
            with session_scope(db.sessions) as session:
                stamp_token(session, token.id)
        except OperationalError:
            log.warning("could not record the last use of API token %s (database busy)", token.name)
    return token


TokenDep = Annotated[ApiToken, Depends(current_token)]


async def get_hub(request: Request) -> Hub:
    """The process's live agent connections."""
    hub: Hub = request.app.state.hub
    return hub


# Dependencies that only read app state are async: a sync one costs a thread-pool hop per request.
HubDep = Annotated[Hub, Depends(get_hub)]


async def get_context(request: Request) -> AppContext:
    """Settings, squads, nodes and the database of this process."""
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


def actor_of(token: ApiToken) -> str:
    """How the audit log names a caller that used ``token``."""
    return f"token:{token.name}"
