"""The control plane's FastAPI app: pages, the JSON API under /api/, the agent endpoint, health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from chat_server import agent_link, commands, pages_chat, pages_nodes, pages_records, pages_squads, signin
from chat_server.principals import NotSignedIn, PasswordChangeRequired, Viewer
from squads.audit.anchor import start_checkpoints
from chat_server.routes import router
from squads.nodes.hub import Hub
from squads.context import AppContext

# Pages load nothing from elsewhere: scripts, styles and images come from this app.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _denials_are_not_errors(record: logging.LogRecord) -> bool:
    # uvicorn's sans-I/O WebSocket protocol logs an ERROR after every denial response
    # (a refused agent token), though the 401/403 went out as intended; the agent
    # endpoint logs the refusal itself as a warning. Alerting on ERROR must not fire
    # on every bad token.
    return "returned without completing handshake" not in record.getMessage()


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _not_signed_in(request: Request, _exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse(
            {"detail": "sign in, or send an API token: Authorization: Bearer sqa_... (squads token create)"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)


async def _password_first(request: Request, _exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": "change your one-time password first (sign in to the web UI)"}, status_code=403)
    return RedirectResponse("/password", status_code=303)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def create_app(context: AppContext, *, hub: Hub | None = None) -> FastAPI:
    """The app for ``context`` (settings, database, squads, nodes)."""
    _ = context.db  # open (and migrate) the database before the first request, not during it
    hub = hub or Hub(sessions=context.db.sessions, readers=context.db.readers,
                     heartbeat_s=context.settings.agent_heartbeat_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.error").addFilter(_denials_are_not_errors)
        await hub.start()
        # Signed head checkpoints at start, on a timer and at shutdown (docs/audit.md).
        anchoring = await start_checkpoints(context.write_checkpoint, interval_s=context.settings.audit_checkpoint_s)
        try:
            yield
        finally:
            anchoring.cancel()
            with suppress(asyncio.CancelledError):
                await anchoring
            await hub.stop()

    # The interactive docs would load scripts from a CDN and be open to anyone: off. The
    # schema itself is served to signed-in callers at /api/openapi.json.
    app = FastAPI(title="Squads control plane", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    app.state.hub = hub
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(PasswordChangeRequired, _password_first)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, bool]:
        """Liveness: 200 once the app is up (no authentication; on the event loop, never behind the thread pool)."""
        return {"ok": True}

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(caller: Viewer) -> JSONResponse:
        """The API's schema, for signed-in callers."""
        return JSONResponse(app.openapi())

    app.include_router(router)
    app.include_router(commands.router)
    app.include_router(signin.router)
    for pages in (pages_chat, pages_nodes, pages_squads, pages_records):
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    agent_link.mount(app)
    return app
