"""Reading PostgreSQL's server state: replication, sizes, clusters, readiness, the service, settings, counters, vacuum, slots, archiver."""

from __future__ import annotations

from datetime import timedelta

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from .. import checks, review
from .. import postgres as pg
from .psql import query_rows

LAG_BYTES = 64 * 1024 * 1024
LAG_TIME = timedelta(seconds=30)


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
    rows = query_rows(output)
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
    rows = query_rows(output)
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
