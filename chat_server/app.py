"""The control plane's FastAPI app: health, the JSON API under /api/ and the agent endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chat_server import agent_link, commands
from chat_server.routes import router
from nodes.hub import Hub
from squads.context import AppContext


def _denials_are_not_errors(record: logging.LogRecord) -> bool:
    # uvicorn's sans-I/O WebSocket protocol logs an ERROR after every denial response
    # (a refused agent token), though the 401/403 went out as intended; the agent
    # endpoint logs the refusal itself as a warning. Alerting on ERROR must not fire
    # on every bad token.
    return "returned without completing handshake" not in record.getMessage()


def create_app(context: AppContext, *, hub: Hub | None = None) -> FastAPI:
    """The app for ``context`` (settings, database, squads, nodes)."""
    _ = context.db  # open (and migrate) the database before the first request, not during it
    hub = hub or Hub(sessions=context.db.sessions, readers=context.db.readers,
                     heartbeat_s=context.settings.agent_heartbeat_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.error").addFilter(_denials_are_not_errors)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = FastAPI(title="Squads control plane", version="0.1.0", lifespan=lifespan)
    app.state.context = context
    app.state.hub = hub

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, bool]:
        """Liveness: 200 once the app is up (no authentication; on the event loop, never behind the thread pool)."""
        return {"ok": True}

    app.include_router(router)
    app.include_router(commands.router)
    agent_link.mount(app)
    return app
