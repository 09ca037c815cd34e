"""What routes depend on besides the caller (``principals.py``): database sessions, the hub, the context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from squads.nodes.hub import Hub
from squads.context import AppContext
from squads.storage.db import session_scope



def get_session(request: Request) -> Iterator[Session]:
    """A database session committed when the request succeeds."""
    with session_scope(request.app.state.context.db.sessions) as session:
        yield session


T = TypeVar("T")
SessionDep = Annotated[Session, Depends(get_session)]


async def get_reader(request: Request) -> AsyncIterator[Session]:
    """A read-only session: on SQLite it never holds, or waits for, the writer lock.

    Async because opening one does no I/O; the sync route that uses it runs in the
    thread pool anyway, and a sync dependency would cost two more thread hops."""
    with request.app.state.context.db.readers() as session:
        yield session


ReaderDep = Annotated[Session, Depends(get_reader)]





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




def process_wide(request: Request, name: str, factory: Callable[[], T]) -> T:
    """One object per app (process), made on first use: the sign-in throttle, the chat's turn registry."""
    state = request.app.state
    if not hasattr(state, name):
        setattr(state, name, factory())
    value: T = getattr(state, name)
    return value
