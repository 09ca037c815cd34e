"""A database's and a role's own connection limits (``datconnlimit``, ``rolconnlimit``) against the
client connections each has now: "too many connections for database X" is X's limit, not
``max_connections``. Registered as ``pg.connection_limits`` in ``analyzers/sessions.py``."""

from __future__ import annotations

from squads.brain.models import Analysis, Facts, Severity

COLUMN = {"database": "datconnlimit", "role": "rolconnlimit"}
ALTER = {"database": "ALTER DATABASE", "role": "ALTER ROLE"}


def _int(value: str) -> int | None:
    text = value.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _open(count: int) -> str:
    return f"{count} client connection{'' if count == 1 else 's'} {'is' if count == 1 else 'are'} open"


def connection_limits(rows: list[dict[str, str]], facts: Facts) -> Analysis:
    """Findings for ``kind|name|conn_limit|connections`` rows (every database that allows connections,
    every login role): each object at its own limit is a cause; the object the user's error names is
    explained whatever its state."""
    named = str(facts.get("limit_object") or "")
    server_max = facts.get("max_connections")
    limited: list[tuple[str, str, int, int]] = []
    seen: list[tuple[str, str, int, int]] = []
    for r in rows:
        kind, name = r.get("kind", ""), r.get("name", "")
        limit, count = _int(r.get("conn_limit", "")), _int(r.get("connections", ""))
        if kind not in COLUMN or not name or limit is None or count is None:
            continue
        seen.append((kind, name, limit, count))
        if limit >= 0:
            limited.append((kind, name, limit, count))
    if not seen:
        result = Analysis(summary="no databases or roles in the output")
        result.add("no_data", Severity.INFO, "The connection limits could not be read: the query returned no rows.",
                   check="connection limits")
        return result
    shown = "; ".join(f"{k} {n} {c}/{lim}" for k, n, lim, c in limited[:8])
    result = Analysis(summary=f"own limits: {shown}" if limited else
                      f"no database or role has a connection limit of its own ({len(seen)} checked)")
    room = f" although max_connections ({server_max}) has room" if server_max else ""
    reached: list[str] = []
    # The object the user's error names goes last: among equal causes the later finding leads the reply.
    for kind, name, limit, count in sorted(limited, key=lambda row: row[1] == named):
        if count < limit:
            continue
        reached.append(name)
        result.add(
            "conn_limit_reached", Severity.CAUSE,
            f"{kind.capitalize()} {name} has a connection limit of its own: {COLUMN[kind]} = {limit} (CONNECTION "
            f"LIMIT {limit}), and {_open(count)} {'to it' if kind == 'database' else 'as it'} now, so it is full: "
            f"every new connection {'to' if kind == 'database' else 'as'} {name} by a non-superuser fails with 'too many "
            f"connections for {kind} \"{name}\"'{room}. Raise it ({ALTER[kind]} {name} CONNECTION LIMIT n, -1 for "
            f"none) above what its applications' pools need, or release the connections that hold it.",
            name=name, kind=kind, alter=ALTER[kind], limit=str(limit), count=str(count),
        )
    if reached:
        result.facts["limits_reached"] = reached
    if named and named not in reached:
        _explain_named(result, named, seen)
    others = [f"{k} {n}: {lim} ({c} now)" for k, n, lim, c in limited if n not in reached and n != named]
    if others:
        result.add("conn_limits", Severity.INFO, "Own connection limits not reached now: " + "; ".join(others[:8]) + ".")
    return result


def _explain_named(result: Analysis, named: str, seen: list[tuple[str, str, int, int]]) -> None:
    """The database or role the user's error names, when it is not full right now."""
    matches = [(k, n, lim, c) for k, n, lim, c in seen if n == named]
    if not matches:
        result.add("conn_limit_none", Severity.INFO,
                   f"No database or login role named {named} exists on this server: the error came from another "
                   "server (check the node), or the object was dropped or renamed since.", name=named)
        return
    for kind, name, limit, count in matches:
        if limit >= 0:
            result.add(
                "conn_limit_near", Severity.PROBLEM,
                f"{kind.capitalize()} {name} has a connection limit of its own: {COLUMN[kind]} = {limit}, and "
                f"{_open(count)} now. It is not full at this moment; the error came from a burst above "
                f"{limit} connections (a pool growing, a deploy opening new connections before the old ones close). "
                f"Size its pools under {limit}, or raise it ({ALTER[kind]} {name} CONNECTION LIMIT n).",
                name=name, kind=kind, limit=str(limit), count=str(count),
            )
        else:
            result.add(
                "conn_limit_none", Severity.INFO,
                f"{kind.capitalize()} {name} has no connection limit of its own now ({COLUMN[kind]} = -1; "
                f"{_open(count)}): the limit that refused clients was removed since, or the "
                "error came from another server.", name=name, kind=kind,
            )
