"""Running the database checks' psql queries through one reader: rows by column, or the failure (server down) as an analysis."""

from __future__ import annotations

from collections.abc import Callable

from squads.brain.analyzers import Output
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Severity

from .. import postgres as pg

STATES = {"active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call", "disabled", ""}


def _is_pid(value: str) -> bool:
    return value.isdigit()


def _is_interval(value: str) -> bool:
    return value == "" or pg.parse_interval(value) is not None


# Which columns of each query may hold the separator (free text), and what the others must look like.
LAYOUTS: dict[str, tuple[tuple[str, ...], dict[str, Callable[[str], bool]]]] = {
    "blocking": (
        ("blocked_query", "blocking_query"),
        {"blocked_pid": _is_pid, "blocking_pid": _is_pid, "blocked_for": _is_interval, "blocking_state": STATES.__contains__},
    ),
    "long_queries": (("query",), {"pid": _is_pid, "runtime": _is_interval, "state": STATES.__contains__}),
    "connections": (("application_name",), {"connections": _is_pid, "state": STATES.__contains__}),
}
DOWN = ("could not connect", "connection to server", "is the server running", "no such file or directory",
        "connection refused", "the database system is shutting down", "the database system is starting up",
        "database system is shut down")


def query_rows(output: Output, layout: str | None = None) -> list[dict[str, str]] | Analysis:
    """The rows of a psql query (``layout`` names its free-text columns and checks), or, when psql failed,
    the analysis that says so (server down: ``server_unreachable``)."""
    if output.missing:
        return failure(output) or Analysis()
    if output.exit_code != 0:
        first = next((ln.strip() for ln in output.stderr.splitlines() if ln.strip()), f"exit code {output.exit_code}")
        result = Analysis(summary=f"psql failed (exit code {output.exit_code}): {first[:200]}")
        if any(marker in output.stderr.lower() for marker in DOWN):
            result.facts["server_down"] = True
            result.add(
                "server_unreachable", Severity.PROBLEM,
                f"PostgreSQL does not accept connections, so it is not a connection-limit problem: psql says "
                f"\"{first[:200]}\". The server is down or not listening where clients look.",
            )
        return result
    free, checks = LAYOUTS.get(layout or "", ((), {}))
    return pg.parse_unaligned(output.stdout, free_text=free, checks=checks)


def duration_text(text: str) -> str:
    """A PostgreSQL interval as a short duration (the text itself when it is not one)."""
    delta = pg.parse_interval(text)
    return pg.format_duration(delta) if delta is not None else text or "?"
