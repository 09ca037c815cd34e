"""Reading PostgreSQL output: connections, locks, long queries, replication, clusters, logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from squads.brain.analyzers import Output, analyzer
from squads.brain.known_errors import CODES as CATALOGUE_CODES
from squads.brain.known_errors import FACTS as CATALOGUE_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.analyzers.common import failure, filesystem_note, no_disk_data, real_filesystems, usage_words
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers import system as sp

from . import checks, logread, review
from . import limits, storage
from . import postgres as pg

LONG_QUERY = timedelta(minutes=5)
LAG_BYTES = 64 * 1024 * 1024
LAG_TIME = timedelta(seconds=30)


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


def _rows(output: Output, layout: str | None = None) -> list[dict[str, str]] | Analysis:
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


def _duration(text: str) -> str:
    delta = pg.parse_interval(text)
    return pg.format_duration(delta) if delta is not None else text or "?"


@analyzer(
    "pg.max_connections",
    facts=("max_connections", "server_down"),
    codes=("server_unreachable",),
)
def max_connections(output: Output, facts: Facts) -> Analysis:
    """``SHOW max_connections``."""
    rows = _rows(output)
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
    rows = _rows(output, "connections")
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
            f"nothing, the longest for {_duration(top.get('longest_in_state', ''))}): its connection pool keeps far "
            f"more connections than it uses.{leak} No heavy query is needed to exhaust connections this way.",
            app=top.get("application_name"),
        )
    elif limit and total >= int(limit) * 0.9:
        result.add(
            "connections_exhausted", Severity.CAUSE,
            f"{total} of max_connections {limit} are in use, so new clients get \"too many clients already\". "
            f"{who} holds {count} of them in state {top.get('state')}, the longest for {_duration(top.get('longest_in_state', ''))}.",
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
                f"{r.get('state')} (longest {_duration(r.get('longest_in_state', ''))})",
            )
    return result


@analyzer(
    "pg.blocking",
    facts=("blocker_pid", "blocker_pids", "no_blocking", "server_down"),
    codes=("blocker_idle_tx", "blocking_ambiguous", "lock_blocker", "no_blocking", "server_unreachable"),
)
def blocking(output: Output, facts: Facts) -> Analysis:
    """``pg_blocking_pids``: the session at the head of each lock chain."""
    rows = _rows(output, "blocking")
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
            f"pid {v.get('blocked_pid')} ({v.get('blocked_user')}, waiting {_duration(v.get('blocked_for', ''))}): "
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
    rows = _rows(output, "long_queries")
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


def _lag(row: dict[str, str]) -> tuple[timedelta, int]:
    times = [pg.parse_interval(row.get(k, "")) for k in ("replay_lag", "flush_lag", "write_lag")]
    size = sp.size_bytes(row.get("replay_lag_size", "")) or 0
    return max((t for t in times if t is not None), default=timedelta(0)), size


@analyzer(
    "pg.replication",
    facts=("lagging", "no_replicas", "server_down"),
    codes=("no_replicas", "replica_lag", "replica_ok", "server_unreachable"),
)
def replication(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_replication``: which replica is behind, and by how much."""
    rows = _rows(output)
    if isinstance(rows, Analysis):
        return rows
    if not rows:
        result = Analysis(summary="no replicas connected", facts={"no_replicas": True})
        result.add(
            "no_replicas", Severity.PROBLEM,
            "No replica is connected to this server (pg_stat_replication is empty): replicas are down, cannot "
            "connect, or this is not the primary.",
        )
        return result
    result = Analysis(summary=", ".join(f"{r.get('application_name')} ({r.get('client_addr')}) {r.get('state')}" for r in rows))
    for r in rows:
        lag, size = _lag(r)
        name = f"{r.get('application_name') or '?'} ({r.get('client_addr')})"
        if lag >= LAG_TIME or size >= LAG_BYTES or r.get("state") not in ("streaming", None):
            write = pg.parse_interval(r.get("write_lag", "")) or timedelta(0)
            where = (
                f"write lag {pg.format_duration(write)} is as large as the replay lag: the replica is not even receiving "
                "and writing WAL in time (network or the replica's disk), so it is not just slow replay"
                if write >= lag * 0.8 and write >= LAG_TIME else
                f"write lag is only {pg.format_duration(write)}: WAL arrives, but replay falls behind (long queries or "
                "conflicts on the replica, or its CPU/disk)"
            )
            result.facts["lagging"] = True
            sync = r.get("sync_state") in ("sync", "quorum")
            effect = ("it is a synchronous replica, so every COMMIT on the primary waits for it: writes slow down"
                      if sync else "reads from it return stale data")
            result.add(
                "replica_lag", Severity.CAUSE,
                f"Replica {name} is {r.get('replay_lag_size') or '?'} behind (replay lag {pg.format_duration(lag)}, "
                f"state {r.get('state')}, {r.get('sync_state')}): {effect}. The {where}.",
                replica=name,
            )
        else:
            result.add("replica_ok", Severity.OK, f"Replica {name} is in sync (lag {pg.format_duration(lag)}).")
    return result


@analyzer(
    "pg.sizes",
    facts=("server_down",),
    codes=("database_dominant", "server_unreachable"),
)
def sizes(output: Output, facts: Facts) -> Analysis:
    """Database sizes; one database holding most of the space is a finding."""
    rows = _rows(output)
    if isinstance(rows, Analysis):
        return rows
    result = Analysis(summary=", ".join(f"{r.get('datname')} {r.get('size')}" for r in rows[:8]))
    review.sizes_dominant(result, rows)
    return result


@analyzer(
    "pg.clusters",
    facts=("pg_logs", "pg_port", "server_down"),
    codes=("cluster_down", "cluster_online", "clusters_share_port"),
)
def clusters(output: Output, facts: Facts) -> Analysis:
    """``pg_lsclusters``: which clusters run, and where each one logs."""
    if failed := failure(output):
        return failed
    found = pg.parse_lsclusters(output.stdout)
    result = Analysis(summary=", ".join(f"{c.version}/{c.name} port {c.port} {c.status}" for c in found))
    result.facts["pg_logs"] = [c.log_file for c in found if c.log_file.startswith("/")]
    ports: dict[int, list[str]] = {}
    for c in found:
        ports.setdefault(c.port, []).append(f"{c.version}/{c.name} ({c.status})")
        if c.status.startswith("online"):
            result.add("cluster_online", Severity.OK, f"Cluster {c.version}/{c.name} is online on port {c.port}.")
    for port, names in ports.items():
        if len(names) > 1:
            result.add(
                "clusters_share_port", Severity.PROBLEM,
                f"Clusters {', '.join(names)} are all configured for port {port}: only one can listen there at a time.",
            )
    down = [c for c in found if not c.status.startswith("online")]
    if down:
        result.facts["pg_port"] = down[0].port
    for c in down:
        result.facts["server_down"] = True
        result.add(
            "cluster_down", Severity.PROBLEM,
            f"Cluster {c.version}/{c.name} (port {c.port}, data in {c.data_directory}) is {c.status}.",
        )
    return result


@analyzer(
    "pg.ready",
    facts=("server_down",),
    codes=("not_ready", "ready"),
)
def ready(output: Output, facts: Facts) -> Analysis:
    """``pg_isready``."""
    if output.missing:
        return Analysis(summary="not available on this node (exit 127)")
    text = output.text.strip()
    if output.exit_code == 0:
        result = Analysis(summary=text or "accepting connections")
        result.add("ready", Severity.OK, f"PostgreSQL is up and accepting connections ({text or 'pg_isready exit 0'}).")
        return result
    result = Analysis(summary=text or f"exit code {output.exit_code}", facts={"server_down": True})
    result.add("not_ready", Severity.PROBLEM, f"The server does not accept connections: {text} (pg_isready exit code {output.exit_code}).")
    return result


@analyzer(
    "pg.status",
    facts=("server_down",),
    codes=("service_failed",),
)
def status(output: Output, facts: Facts) -> Analysis:
    """``systemctl status postgresql``."""
    parsed = sp.parse_systemctl_status(output.stdout)
    if parsed is None:
        return failure(output) or Analysis(summary="no status")
    result = Analysis(summary=f"{parsed.unit}: {parsed.active} ({parsed.sub})")
    if parsed.active == "failed":
        result.facts["server_down"] = True
        result.add("service_failed", Severity.PROBLEM, f"{parsed.unit} failed ({parsed.sub}) since {parsed.since}.")
    return result


# Lines that tell a server's life story (shut down, restarted, caught up), with what they mean.
LIFECYCLE = [
    ("received fast shutdown request", "the server was asked to shut down (fast)"),
    ("received smart shutdown request", "the server was asked to shut down (smart)"),
    ("received immediate shutdown request", "the server was stopped immediately"),
    ("database system is shut down", "the server was shut down"),
    ("database system was shut down", "the server starts after a clean shutdown"),
    ("database system was interrupted", "the server starts after a crash (it was interrupted)"),
    ("entering standby mode", "the server starts as a replica (standby)"),
    ("redo starts at", "the replica starts replaying WAL"),
    ("started streaming wal", "the replica is streaming WAL from the primary again, catching up"),
    ("database system is ready to accept", "the server is up and accepts connections"),
    ("terminating walreceiver", "the replica lost its connection to the primary"),
    ("received promote request", "the server was asked to leave recovery and become a primary (promote)"),
    ("archive recovery complete", "recovery ended: the server now accepts writes"),
]
# Server-log lines whose meaning is certain: (pattern, finding code, sentence).
LOG_CAUSES = [
    (
        re.compile(r'could not bind \S+ address "(?P<address>[^"]+)": Address already in use'),
        "pg_port_in_use",
        "PostgreSQL cannot start: the address {address} port {port} is already in use (another postmaster or program "
        "listens there), so it could not create its sockets. Log: \"{line}\"",
    ),
    (
        re.compile(r'no pg_hba\.conf entry for replication connection from host "(?P<host>[^"]+)", user "(?P<user>[^"]+)"'),
        "pg_hba_replication",
        "The primary rejects the replica at {host} (user {user}): pg_hba.conf has no replication entry for it "
        "({count} attempts). Add a `host replication {user} {host}/32 scram-sha-256` line and reload.",
    ),
    (
        re.compile(r'no pg_hba\.conf entry for host "(?P<host>[^"]+)", user "(?P<user>[^"]+)", database "(?P<db>[^"]+)"'),
        "pg_hba_client",
        "Connections from {host} (user {user}, database {db}) are rejected: pg_hba.conf has no entry for them.",
    ),
    (
        re.compile(r'password authentication failed for user "(?P<user>[^"]+)"'),
        "pg_auth_failed",
        "Password authentication fails for user {user} ({count} times).",
    ),
    (
        re.compile(r"could not map anonymous shared memory"),
        "pg_shared_memory",
        "PostgreSQL cannot start: it could not map its shared memory (\"{line}\"). The amount it asks for grows "
        "with shared_buffers and max_connections: a recent increase of max_connections (or shared_buffers) is the "
        "usual cause; lower it, or give the machine the memory (and huge pages) it needs.",
    ),
    (
        re.compile(r'lock file "(?P<file>[^"]*postmaster\.pid)" already exists'),
        "pg_stale_pid",
        "PostgreSQL will not start because the lock file {file} already exists. If no postgres process runs with "
        "the PID it names (see the HINT in the log), the file is stale, left behind by a crash or a kill: check "
        "with `ps -p PID`, then move the file aside and start the cluster (a state change: needs approval).",
    ),
    (
        re.compile(r"server process \(PID (?P<pid>\d+)\) was terminated by signal 9"),
        "pg_oom_killed",
        "A PostgreSQL backend (pid {pid}) was killed by signal 9, usually the kernel's OOM killer: the server "
        "restarted all sessions. Check memory (work_mem x connections) and the kernel log.",
    ),
]


@analyzer(
    "pg.log",
    facts=("disk_full_suspected", *checks.LOG_FACTS, *logread.FACTS, *CATALOGUE_FACTS),
    codes=(
        "no_data", "pg_disk_full", "pg_hint", "pg_lifecycle", "pg_log_error", "pg_too_many_clients", *(code for _, code, _ in
        LOG_CAUSES), *checks.LOG_CODES, *logread.CODES, *CATALOGUE_CODES,
    ),
)
def server_log(output: Output, facts: Facts) -> Analysis:
    """The PostgreSQL server log: PANIC/FATAL reasons (disk full, too many clients, ...)."""
    if failed := failure(output):
        return failed
    parsed = [p for p in (lp.parse_pg_log(line) for line in output.stdout.splitlines()) if p]
    if not parsed:
        result = Analysis(summary="no log lines")
        result.add("no_data", Severity.INFO, "The server log had no PostgreSQL lines to read: the log was not checked.", check="server log")
        return result
    bad = [p for p in parsed if p.level in ("PANIC", "FATAL", "ERROR")]
    result = Analysis(summary=f"{len(parsed)} log lines, {len(bad)} errors")
    space = [p for p in bad if "no space left on device" in p.message.lower()]
    if space:
        result.facts["disk_full_suspected"] = True
        result.add(
            "pg_disk_full", Severity.PROBLEM,
            f"The server log says it ran out of disk: {space[-1].level}: {space[-1].message}",
        )
    clients = [p for p in bad if "too many clients" in p.message.lower()]
    if clients:
        result.add("pg_too_many_clients", Severity.PROBLEM, f"{len(clients)} connection attempts were refused: \"too many clients already\".")
    known = space + clients
    for pattern, code, template in LOG_CAUSES:
        hits = [(p, m) for p in parsed for m in [pattern.search(p.message)] if m]
        if hits:
            line, found = hits[-1]
            known.extend(p for p, _ in hits)
            values = {k: v for k, v in found.groupdict().items() if v}
            values.setdefault("port", str(facts.get("pg_port", "its port")))
            result.add(code, Severity.CAUSE, template.format(count=len(hits), line=line.message, **values), **values)
    for p in parsed:
        for needle, meaning in LIFECYCLE:
            if needle in p.message.lower():
                result.add("pg_lifecycle", Severity.INFO, f"{p.time}: {meaning} (\"{p.message[:160]}\").")
                break
    hint = next((p.message for p in parsed if p.level == "HINT" and "postmaster" in p.message.lower()), "")
    if hint:
        result.add("pg_hint", Severity.INFO, f"The server's hint: {hint}")
    checks.log_findings(result, parsed, facts)
    logread.log_findings(result, parsed, facts, output.stdout)
    known.extend(p for p in bad if logread.recognised(p))
    known.extend(p for p in bad if any(marker in p.message for marker in READ_HERE))
    # The reasoning above wins for the lines it read (at any level); the catalogue reports the rest:
    # known messages and SQLSTATEs with meaning, fix and count, and the error lines nobody recognises.
    read = [p for p in parsed if p in known or logread.recognised(p) or any(m in p.message for m in READ_HERE)
            or any(needle in p.message.lower() for needle, _ in LIFECYCLE)]
    messages, pids = {p.message for p in read}, {p.pid for p in read if p.pid is not None}

    def explained(line: str) -> bool:
        p = lp.parse_pg_log(line)  # a DETAIL/HINT/... line belongs to its process's message above it
        return p is not None and (p.message in messages or p.level in ATTACHED and p.pid in pids)

    fill_in(result, output.stdout, squad="database", source="The server log", explained=explained)
    other = [p for p in bad if p not in known]
    if other and not any(other[-1].message[:200] in f.text for f in result.findings):  # not quoted by the catalogue
        result.add("pg_log_error", Severity.PROBLEM if not space else Severity.INFO, f"Last error in the log: {other[-1].level}: {other[-1].message}")
    return result


ATTACHED = ("DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION")
# Messages the database checks (checks.py) read to the end: the catalogue does not report them again.
READ_HERE = ("too many connections for", "remaining connection slots", "out of shared memory", "duplicate key value",
             "lock timeout", "administrator command", "deadlock detected", "wraparound", "must be vacuumed")


@analyzer(
    "pg.disk",
    facts=("disk_filling_mounts",),
    codes=("disk_filling", "disk_full", "disk_ok", "no_data"),
)
def disk(output: Output, facts: Facts) -> Analysis:
    """``df -h`` (or ``df -i``) for a database host: the data directory's file system above all;
    tmpfs and container roots count too."""
    if failed := failure(output):
        return failed
    parsed = sp.parse_df(output.stdout)
    if not parsed:
        return no_disk_data(output)
    systems = real_filesystems(parsed)
    result = Analysis(summary=", ".join(f"{f.mount} {f.use_percent}%{' inodes' if f.inodes else ''}" for f in systems))
    for f in systems:
        data_dir = "postgres" in f.mount or f.mount in ("/", "/var", "/var/lib")
        if f.use_percent >= 95:
            consequence = ("PostgreSQL cannot write WAL or data there, so it stops" if data_dir
                           else "writes there fail with \"No space left on device\"")
            result.add(
                "disk_full", Severity.CAUSE,
                f"The file system on {f.mount} ({f.source}) is {usage_words(f)}: {consequence}. "
                f"Free space (old logs, WAL archives) or grow the volume.{filesystem_note(f)}",
                mount=f.mount,
            )
        elif f.use_percent >= 85:
            result.add("disk_filling", Severity.PROBLEM, f"{f.mount} is {usage_words(f)}.{filesystem_note(f)}", mount=f.mount)
        if f.use_percent >= 85:
            result.facts.setdefault("disk_filling_mounts", []).append(f.mount)
        elif data_dir:
            result.add("disk_ok", Severity.OK, f"{f.mount} is {usage_words(f)}.")
    return result


@analyzer("pg.settings", facts=("max_connections", "pg_settings", "sync_standby_missing"),
          codes=("no_data", "sync_standby_missing"))
def settings(output: Output, facts: Facts) -> Analysis:
    """``pg_settings``: the non-default settings, kept for the other checks; a synchronous standby that is
    named but not connected (after ``pg.replication`` found no replica)."""
    result = checks.settings(output, facts)
    if facts.get("no_replicas"):
        review.sync_standby_missing(result, {**facts, **result.facts})
    return result


@analyzer("pg.hba_rules", codes=("hba_error", "hba_missing", "hba_ssl_required", "no_data"))
def hba_rules(output: Output, facts: Facts) -> Analysis:
    """``pg_hba_file_rules``: invalid lines, and the rule a rejected client lacks."""
    return checks.hba_rules(output, facts)


@analyzer("pg.counters", facts=("temp_spills",),
          codes=("deadlocks_counted", "no_data", "rollbacks_high", "standby_conflicts", "temp_spill"))
def counters(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_database``: deadlocks, temp files, rollbacks."""
    return checks.counters(output, facts)


@analyzer("pg.xid_age", codes=("no_data", "xid_ok", "xid_wraparound"))
def xid_age(output: Output, facts: Facts) -> Analysis:
    """``age(datfrozenxid)``: wraparound risk."""
    return checks.xid_age(output, facts)


@analyzer("pg.dead_tuples", codes=("dead_tuples", "no_data"))
def dead_tuples(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_user_tables``: vacuum falling behind."""
    return checks.dead_tuples(output, facts)


@analyzer("pg.slots", facts=("slot_retains_wal",), codes=("no_data", "slot_inactive", "slots_ok"))
def replication_slots(output: Output, facts: Facts) -> Analysis:
    """``pg_replication_slots``: an inactive slot retaining WAL."""
    return review.slots(output, facts)


@analyzer("pg.archiver", facts=("archive_failing",), codes=("archive_failing", "archive_ok", "no_data"))
def archiver(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_archiver``: archive_command failing now."""
    return review.archiver(output, facts)


@analyzer("pg.connection_limits", facts=("limits_reached", "server_down"),
          codes=("conn_limit_near", "conn_limit_none", "conn_limit_reached", "conn_limits", "no_data", "server_unreachable"))
def connection_limits(output: Output, facts: Facts) -> Analysis:
    """``datconnlimit``/``rolconnlimit`` against each database's and role's connections now."""
    rows = _rows(output)
    if isinstance(rows, Analysis):
        return rows
    return limits.connection_limits(rows, facts)


@analyzer("pg.kernel", facts=storage.FACTS, codes=storage.CODES)
def kernel(output: Output, facts: Facts) -> Analysis:
    """``journalctl -k``: the failing disk (named) behind I/O errors, read-only remounts, OOM kills of PostgreSQL."""
    return storage.kernel(output)
