"""Reading PostgreSQL's sessions: max_connections, who holds the connections, blocking locks, long queries, connection limits."""

from __future__ import annotations

from datetime import timedelta

from squads.brain.analyzers import Output, analyzer
from squads.brain.models import Analysis, Facts, Severity

from .. import limits, review
from .. import postgres as pg
from .psql import duration_text, query_rows

LONG_QUERY = timedelta(minutes=5)


@analyzer(
    "pg.max_connections",
    facts=("max_connections", "server_down"),
    codes=("server_unreachable",),
)
def max_connections(output: Output, facts: Facts) -> Analysis:
    """``SHOW max_connections``."""
    rows = query_rows(output)
    if isinstance(rows, Analysis):
        return rows
    value = rows[0].get("max_connections", "") if rows else ""
    return Analysis(summary=f"max_connections = {value or '?'}", facts={"max_connections": int(value)} if value.isdigit() else {})


@analyzer(
    "pg.connections",
    facts=("idle_in_transaction", "server_down"),
    codes=(
        "connection_group", "connections_exhausted", "connections_pool", "connections_spread", "connections_top",
        "db_not_bottleneck", "idle_in_transaction", "server_unreachable",
    ),
)
def connections(output: Output, facts: Facts) -> Analysis:
    """Client connections grouped by database, user, application and state: who holds them."""
    rows = query_rows(output, "connections")
    if isinstance(rows, Analysis):
        return rows
    total = sum(int(r.get("connections", "0") or 0) for r in rows)
    limit = facts.get("max_connections")
    of_limit = f" of max_connections {limit}" if limit else ""
    result = Analysis(summary=f"{total} client connections{of_limit} in {len(rows)} groups")
    if not rows:
        return result
    top = max(rows, key=lambda r: int(r.get("connections", "0") or 0))
    count = int(top.get("connections", "0") or 0)
    who = f"{top.get('application_name') or '(no application name)'} (user {top.get('usename')}, database {top.get('datname')})"
    apps: dict[str, int] = {}
    for r in rows:
        key = r.get("application_name") or r.get("usename") or "?"
        apps[key] = apps.get(key, 0) + int(r.get("connections", "0") or 0)
    leader, leading = max(apps.items(), key=lambda p: p[1])
    if limit and total >= int(limit) * 0.9 and leading < total * 0.5:
        ranked = ", ".join(f"{a} {n}" for a, n in sorted(apps.items(), key=lambda p: -p[1])[:6])
        result.add(
            "connections_spread", Severity.CAUSE,
            f"{total} of max_connections {limit} are in use, so new clients are refused. No single application "
            f"dominates: the connections are spread across {len(apps)} applications (largest: {leader} with {leading}; "
            f"{ranked}). The limit is too small for everything that connects, or the pools are sized too large together.",
        )
    elif limit and total >= int(limit) * 0.8 and top.get("state") == "idle":
        idle_for = pg.parse_interval(top.get("longest_in_state", ""))
        leak = (" Connections idle that long are opened and never closed or returned to a pool: a connection leak in "
                f"{top.get('application_name') or top.get('usename')}." if idle_for and idle_for.total_seconds() >= 3600 else "")
        result.add(
            "connections_pool", Severity.CAUSE,
            f"{total} of max_connections {limit} are in use. {who} holds {count} of them idle (open but doing "
            f"nothing, the longest for {duration_text(top.get('longest_in_state', ''))}): its connection pool keeps far "
            f"more connections than it uses.{leak} No heavy query is needed to exhaust connections this way.",
            app=top.get("application_name"),
        )
    elif limit and total >= int(limit) * 0.9:
        result.add(
            "connections_exhausted", Severity.CAUSE,
            f"{total} of max_connections {limit} are in use, so new clients get \"too many clients already\". "
            f"{who} holds {count} of them in state {top.get('state')}, the longest for {duration_text(top.get('longest_in_state', ''))}.",
            app=top.get("application_name"), state=top.get("state"),
        )
    else:
        result.add("connections_top", Severity.INFO, f"{who} holds the most connections: {count} ({top.get('state')}).")
    active = sum(int(r.get("connections", "0") or 0) for r in rows if r.get("state") == "active")
    if facts.get("no_long_queries") and facts.get("no_blocking") and limit and total < int(limit) * 0.5:
        result.add(
            "db_not_bottleneck", Severity.CAUSE,
            f"The database is not the bottleneck: it is mostly idle. {total} of max_connections {limit} connections are "
            f"open and only {active} active, no query has run for long, and no session is blocked or waiting on a lock. "
            "Look at the application side (its pool's wait time, its own CPU, the network, a slow dependency) before the database.",
        )
    idle_tx = [r for r in rows if r.get("state") == "idle in transaction"]
    leaked = sum(int(r.get("connections", "0") or 0) for r in idle_tx)
    if leaked >= max(5, total * 0.2):
        holders = ", ".join(f"{r.get('application_name') or r.get('usename')} ({r.get('connections')})" for r in idle_tx)
        result.facts["idle_in_transaction"] = leaked
        result.add(
            "idle_in_transaction", Severity.PROBLEM,
            f"{leaked} connections are idle in transaction ({holders}): the application opened a transaction and never "
            "committed or rolled back, so each holds a connection (and possibly locks) until it does.",
        )
    for r in rows:
        if r is not top and int(r.get("connections", "0") or 0) >= 5:
            result.add(
                "connection_group", Severity.INFO,
                f"{r.get('connections')} x {r.get('application_name') or '?'} / {r.get('usename')} @ {r.get('datname')}: "
                f"{r.get('state')} (longest {duration_text(r.get('longest_in_state', ''))})",
            )
    return result


@analyzer(
    "pg.blocking",
    facts=("blocker_pid", "blocker_pids", "no_blocking", "server_down"),
    codes=("blocker_idle_tx", "blocking_ambiguous", "lock_blocker", "no_blocking", "server_unreachable"),
)
def blocking(output: Output, facts: Facts) -> Analysis:
    """``pg_blocking_pids``: the session at the head of each lock chain."""
    rows = query_rows(output, "blocking")
    if isinstance(rows, Analysis):
        return rows
    if not rows:
        result = Analysis(summary="no session is waiting on a lock", facts={"no_blocking": True})
        result.add("no_blocking", Severity.OK, "No session is blocked by another one right now.")
        return result
    unclear = [r for r in rows if r.get(pg.AMBIGUOUS)]
    rows = [r for r in rows if not r.get(pg.AMBIGUOUS)]
    blocked = {r.get("blocked_pid") for r in rows}
    heads = [r for r in rows if r.get("blocking_pid") not in blocked]
    result = Analysis(summary=f"{len(rows) + len(unclear)} blocked sessions")
    if unclear:
        result.add(
            "blocking_ambiguous", Severity.PROBLEM,
            f"{len(unclear)} row(s) of the lock report cannot be read unambiguously: a query text contains the '|' "
            "separator in a way that could shift the pid and user columns. I did not take a pid from them; check "
            "pg_stat_activity by hand before terminating anything.",
        )
    seen: set[str] = set()
    for r in heads or rows:
        pid = r.get("blocking_pid", "")
        if pid in seen:
            continue
        seen.add(pid)
        victims = [x for x in rows if x.get("blocking_pid") == pid]
        waits = [pg.parse_interval(x.get("blocked_for", "")) for x in victims]
        longest = max((w for w in waits if w is not None), default=None)
        result.facts.setdefault("blocker_pids", []).append(pid)
        waiting = "; ".join(
            f"pid {v.get('blocked_pid')} ({v.get('blocked_user')}, waiting {duration_text(v.get('blocked_for', ''))}): "
            f"{v.get('blocked_query')}" for v in victims[:3]
        )
        result.add(
            "lock_blocker", Severity.CAUSE,
            f"Session pid {pid} (user {r.get('blocking_user')}, state {r.get('blocking_state')}) blocks "
            f"{len(victims)} session(s) directly and {len(rows) - len(victims)} more queue behind them; the longest "
            f"has waited {pg.format_duration(longest) if longest else '?'}. It holds the lock from: "
            f"{r.get('blocking_query')}. Directly blocked: {waiting}.",
            pid=pid, user=r.get("blocking_user"), state=r.get("blocking_state"),
        )
        if r.get("blocking_state") == "idle in transaction":
            result.add(
                "blocker_idle_tx", Severity.PROBLEM,
                f"pid {pid} is idle in transaction: its client ran the query above and never committed, so the lock is "
                "held until the client finishes or the session is terminated.",
            )
    if heads:
        result.facts["blocker_pid"] = heads[0].get("blocking_pid")
    return result


@analyzer(
    "pg.long_queries",
    facts=("commit_waits", "long_pids", "longest_pid", "no_long_queries", "server_down"),
    codes=("commit_waits_sync", "long_query", "server_unreachable", "xmin_holder"),
)
def long_queries(output: Output, facts: Facts) -> Analysis:
    """Non-idle sessions, longest first."""
    rows = query_rows(output, "long_queries")
    if isinstance(rows, Analysis):
        return rows
    result = Analysis(summary=f"{len(rows)} non-idle sessions")
    for r in rows:
        runtime = pg.parse_interval(r.get("runtime", ""))
        if runtime is None or runtime < LONG_QUERY or "pg_stat_activity" in r.get("query", ""):
            continue
        result.facts.setdefault("long_pids", []).append(r.get("pid"))
        waiting = f", waiting on {r.get('wait_event_type')}" if r.get("wait_event_type") and r.get("state") == "active" else ""
        result.add(
            "long_query", Severity.PROBLEM if r.get("state") != "idle in transaction" else Severity.INFO,
            f"pid {r.get('pid')} (user {r.get('usename')}, database {r.get('datname')}) has been {r.get('state')} for "
            f"{pg.format_duration(runtime)} ({r.get('runtime')}){waiting}: {r.get('query')}",
            pid=r.get("pid"),
        )
    if result.findings:
        result.facts["longest_pid"] = result.findings[0].data.get("pid")
    else:
        result.facts["no_long_queries"] = True
    commits = [r for r in rows if r.get("query", "").strip().upper().startswith("COMMIT") and r.get("wait_event_type") == "IPC"]
    if commits:
        result.facts["commit_waits"] = True
        result.add(
            "commit_waits_sync", Severity.PROBLEM,
            f"{len(commits)} sessions wait in COMMIT on IPC (pids {', '.join(r.get('pid', '?') for r in commits[:5])}): "
            "with synchronous replication each commit waits until a synchronous replica confirms it, so a slow or "
            "lagging synchronous replica slows every write.",
        )
    review.xmin_holders(result, rows)
    return result


@analyzer("pg.connection_limits", facts=("limits_reached", "server_down"),
          codes=("conn_limit_near", "conn_limit_none", "conn_limit_reached", "conn_limits", "no_data", "server_unreachable"))
def connection_limits(output: Output, facts: Facts) -> Analysis:
    """``datconnlimit``/``rolconnlimit`` against each database's and role's connections now."""
    rows = query_rows(output)
    if isinstance(rows, Analysis):
        return rows
    return limits.connection_limits(rows, facts)
