"""``squads serve``: the control plane under uvicorn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from chat_server.app import create_app
from squads.context import AppContext, load_context
from squads.storage.db import session_scope
from squads.accounts.service import ensure_first_admin


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on (use 0.0.0.0 behind a reverse proxy only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8700,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
) -> None:
    """Run the control plane on the embedded defaults (SQLite) unless SQUADS_DATABASE_URL says otherwise."""
    if (tls_cert is None) != (tls_key is None):
        typer.echo("error: give both --tls-cert and --tls-key, or neither (and terminate TLS in a proxy)", err=True)
        raise typer.Exit(2)
    context = load_context()
    context.serving = True  # `local` is off unless SQUADS_LOCAL_NODE says otherwise
    announce_first_admin(context)
    app = create_app(context)
    uvicorn.run(app, host=host, port=port, log_level="info",
                **uvicorn_options(tls_cert=tls_cert, tls_key=tls_key, trusted_proxies=context.settings.trusted_proxies))


def announce_first_admin(context: AppContext) -> None:
    """On a database with no users, create ``admin`` and print its one-time password (never stored in clear)."""
    with session_scope(context.db.sessions) as session:
        first = ensure_first_admin(session)
    if first is not None:
        typer.echo(
            f"\nFirst start: created user {first.username!r} with the one-time password\n\n    {first.password}\n\n"
            "It is shown this once and must be changed at the first sign-in.\n", err=True,
        )


def uvicorn_options(
    *, tls_cert: Path | None = None, tls_key: Path | None = None, trusted_proxies: Sequence[str] = ()
) -> dict[str, Any]:
    """How uvicorn serves the control plane (shared by ``squads serve`` and the tests).

    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from
    ``trusted_proxies`` (``SQUADS_TRUSTED_PROXIES``). uvicorn would otherwise
    trust them from loopback (or from ``FORWARDED_ALLOW_IPS``), so any local
    process could pick the address that the audit log and the sign-in throttle
    see; the explicit list overrides both.

    The sans-I/O WebSocket implementation without compression keeps an idle agent
    at about 20 KiB of server memory; a client cannot switch compression on to
    make the server hold a zlib context per connection. Liveness comes from the
    agents' heartbeats, so there is no per-connection ping timer either."""
    return {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": 1024 * 1024,
        "ws_ping_interval": None,
        "timeout_graceful_shutdown": 5,
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": list(trusted_proxies),
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
    }
