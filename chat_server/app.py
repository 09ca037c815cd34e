"""The control plane's FastAPI app: health, and the JSON API under /api/ (API token required)."""

from __future__ import annotations

from fastapi import FastAPI

from chat_server.routes import router
from squads.context import AppContext


def create_app(context: AppContext) -> FastAPI:
    """The app for ``context`` (settings, database, squads, nodes)."""
    app = FastAPI(title="Squads control plane", version="0.1.0")
    app.state.context = context
    _ = context.db  # open (and migrate) the database before the first request, not during it

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        """Liveness: 200 once the app is up (no authentication)."""
        return {"ok": True}

    app.include_router(router)
    return app
