"""PostgreSQL checks for WAL that cannot go away (replication slots, archiving), a synchronous standby
that is gone, one database that outgrew the rest, and sessions holding back vacuum (issue 12,
TAXONOMY db-16, db-17, db-21, db-41, db-52). Registered as analyzers in ``analyzers/``."""

from __future__ import annotations

from datetime import timedelta

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from . import postgres as pg
from .checks import no_data, psql_rows

SLOT_WAL = 1024**3  # an inactive slot retaining a gigabyte of WAL is filling the disk
XMIN_HOLD = timedelta(hours=1)


def slots(output: Output, facts: Facts) -> Analysis:
    """``pg_replication_slots``: an inactive slot keeps every WAL segment its consumer has not read."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("replication slots", output)
    result = Analysis(summary=", ".join(f"{r.get('slot_name')} ({'active' if r.get('active') == 't' else 'inactive'}, "
                                        f"{r.get('retained_wal') or '?'})" for r in rows[:5]) or "no replication slots")
    for r in rows:
        retained = sp.size_bytes(r.get("retained_wal", "")) or 0
        status = r.get("wal_status", "")
        if r.get("active") != "t" and (retained >= SLOT_WAL or status in ("extended", "unreserved", "lost")):
            result.facts["slot_retains_wal"] = True
            result.add(
                "slot_inactive", Severity.CAUSE,
                f"Replication slot {r.get('slot_name')} ({r.get('slot_type')}) is inactive and holds {r.get('retained_wal')} "
                f"of WAL (wal_status {status or '?'}): nothing consumes it (its replica or logical consumer is gone), so "
                "PostgreSQL keeps every WAL segment since and pg_wal grows until the disk is full. If its consumer is not "
                f"coming back, drop it: SELECT pg_drop_replication_slot('{r.get('slot_name')}') (a change you run yourself).",
                slot=r.get("slot_name", ""),
            )
    if rows and not result.findings:
        result.add("slots_ok", Severity.OK, f"All {len(rows)} replication slot(s) are in use or hold little WAL.")
    return result


def archiver(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_archiver``: whether archive_command fails now (the last failure is newer than the last success)."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("WAL archiver", output)
    r = rows[0] if rows else {}
    failed, archived = int(r.get("failed_count") or 0), int(r.get("archived_count") or 0)
    last_failed, last_ok = r.get("last_failed_time", ""), r.get("last_archived_time", "")
    result = Analysis(summary=f"{archived} archived, {failed} failed (last failure {r.get('last_failed_wal') or 'none'})")
    if failed and last_failed > last_ok:
        result.facts["archive_failing"] = True
        result.add(
            "archive_failing", Severity.CAUSE,
            f"WAL archiving is failing now: {failed} failures, the last for {r.get('last_failed_wal')} at {last_failed}, "
            f"after the last success at {last_ok or 'never'}. PostgreSQL keeps every segment it could not archive, so "
            "pg_wal grows until the disk fills, and backups have a gap. Run archive_command by hand as postgres to see why.",
        )
    elif archived or failed:
        result.add("archive_ok", Severity.OK, f"WAL archiving works: the last segment archived at {last_ok or '?'}.")
    return result


def sizes_dominant(result: Analysis, rows: list[dict[str, str]]) -> None:
    """One database holding most of the space is the answer to "what fills the disk"."""
    sized = [(r.get("datname", "?"), sp.size_bytes(r.get("size", "")) or 0) for r in rows]
    total = sum(size for _, size in sized)
    if not sized or not total:
        return
    name, size = max(sized, key=lambda item: item[1])
    if size >= total * 0.7 and size >= 10 * 1024**3:
        others = ", ".join(f"{n} {r.get('size')}" for (n, _), r in zip(sized, rows, strict=True) if n != name)[:200]
        result.add(
            "database_dominant", Severity.PROBLEM,
            f"Database {name} takes {size / total:.0%} of the space of all databases "
            f"({next(r.get('size') for r in rows if r.get('datname') == name)}; the others: {others}): "
            "look at its largest tables and what writes to them.",
            database=name,
        )


def sync_standby_missing(result: Analysis, facts: Facts) -> None:
    """No replica connected while synchronous_standby_names is set: every COMMIT waits forever."""
    names = (facts.get("pg_settings") or {}).get("synchronous_standby_names", "")
    if names:
        result.facts["sync_standby_missing"] = True
        result.add(
            "sync_standby_missing", Severity.CAUSE,
            f"synchronous_standby_names is '{names}' but no standby is connected: every COMMIT waits for a "
            "synchronous standby that is not there, so writes hang while reads work. Bring the standby back, or (if "
            "losing it is accepted) empty synchronous_standby_names and reload (needs approval).",
        )


def xmin_holders(result: Analysis, rows: list[dict[str, str]]) -> None:
    """A transaction open for hours keeps the xmin horizon back: vacuum cannot remove what it might see."""
    for r in rows:
        runtime = pg.parse_interval(r.get("runtime", ""))
        if r.get("state", "").startswith("idle in transaction") and runtime is not None and runtime >= XMIN_HOLD:
            result.add(
                "xmin_holder", Severity.CAUSE,
                f"pid {r.get('pid')} (user {r.get('usename')}, database {r.get('datname')}) has been idle in transaction "
                f"for {pg.format_duration(runtime)}: while it stays open, vacuum cannot remove any row version newer "
                "than its snapshot, in every table, so dead rows pile up and tables bloat. End it (terminating it needs "
                "approval) and fix the client that leaves it open.",
                pid=r.get("pid", ""),
            )
            return
