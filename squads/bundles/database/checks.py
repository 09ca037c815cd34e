"""PostgreSQL checks beyond sessions: settings, pg_hba rules, database counters, XID age, dead tuples,
and the server-log lines whose meaning needs those (registered as analyzers in ``analyzers/``)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp

from . import postgres as pg

XID_WARN = 1_000_000_000  # autovacuum_freeze_max_age is 200M; past a billion, wraparound is a real risk
XID_STOP = 2_000_000_000


def psql_rows(output: Output) -> list[dict[str, str]] | None:
    """The rows of a psql query's unaligned output, or None when it failed or printed nothing."""
    if output.exit_code != 0 or not output.stdout.strip():
        return None
    return pg.parse_unaligned(output.stdout)


def no_data(what: str, output: Output) -> Analysis:
    """A ``no_data`` finding quoting the first line the command printed (issue 12 contract 3)."""
    first = next((ln.strip() for ln in output.text.splitlines() if ln.strip()), f"exit code {output.exit_code}")
    result = Analysis(summary=f"{what}: no data")
    result.add("no_data", Severity.INFO, f"{what} could not be checked: \"{first[:200]}\".", check=what)
    return result


def settings(output: Output, facts: Facts) -> Analysis:
    """``pg_settings`` (non-default): keep them as facts for the other checks."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("settings", output)
    values = {r.get("name", ""): r.get("setting", "") for r in rows if r.get("name")}
    units = {r.get("name", ""): r.get("unit", "") for r in rows}
    shown = ", ".join(f"{k}={v}{units.get(k, '')}" for k, v in sorted(values.items())[:12])
    result = Analysis(summary=f"{len(values)} non-default settings: {shown}", facts={"pg_settings": values})
    if "max_connections" in values and values["max_connections"].isdigit():
        result.facts["max_connections"] = int(values["max_connections"])
    return result


def hba_rules(output: Output, facts: Facts) -> Analysis:
    """``pg_hba_file_rules``: errors in the file, and the rule a rejected client lacks (with the line to add)."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("pg_hba rules", output)
    result = Analysis(summary=f"{len(rows)} pg_hba rules")
    for r in rows:
        if r.get("error"):
            result.add("hba_error", Severity.CAUSE, f"pg_hba.conf line {r.get('line_number')} is invalid and ignored: {r.get('error')}.")
    for reject in facts.get("hba_rejects", []) or []:
        _explain_reject(result, rows, reject)
    return result


def _covers(rule: dict[str, str], host: str) -> bool:
    address, mask = rule.get("address", ""), rule.get("netmask", "")
    if address in ("all", ""):
        return address == "all"
    try:
        net = ipaddress.ip_network(f"{address}/{mask}" if mask else address, strict=False)
        return ipaddress.ip_address(host) in net
    except ValueError:
        return False


def _names(field: str) -> set[str]:
    return {n.strip() for n in field.strip("{}").split(",") if n.strip()}


def _explain_reject(result: Analysis, rows: list[dict[str, str]], reject: dict[str, str]) -> None:
    host, user, db, encrypted = reject["host"], reject["user"], reject["db"], reject.get("encryption", "")
    matching = [r for r in rows if r.get("type", "").startswith("host") and _covers(r, host)
                and (_names(r.get("database", "")) & {db, "all"}) and (_names(r.get("user_name", "")) & {user, "all"}
                                                                       or any(n.startswith("+") for n in _names(r.get("user_name", ""))))]
    ssl_only = [r for r in matching if r.get("type") == "hostssl"]
    if encrypted == "no encryption" and ssl_only and len(ssl_only) == len(matching):
        rule = ssl_only[0]
        result.add(
            "hba_ssl_required", Severity.CAUSE,
            f"pg_hba.conf did not change: line {rule.get('line_number')} (hostssl {rule.get('database')} "
            f"{rule.get('user_name')} {rule.get('address')}/{rule.get('netmask')} {rule.get('auth_method')}) admits "
            f"{user}@{db} from {host}, but only over TLS (hostssl), and the client at {host} connects without "
            "encryption (\"no encryption\" in the log). Connections that negotiate TLS (like a laptop's psql) get in. "
            f"Fix the client: sslmode=require (or verify-full) in its connection string or driver. Only if unencrypted "
            f"access is really wanted, add `host {db} {user} {host}/32 scram-sha-256` before line "
            f"{rule.get('line_number')} and reload.",
            host=host, user=user, db=db,
        )
    elif not matching:
        kind = "hostssl" if any(r.get("type") == "hostssl" for r in rows) else "host"
        result.add(
            "hba_missing", Severity.CAUSE,
            f"No pg_hba.conf rule admits {user}@{db} from {host}. Add `{kind} {db} {user} {host}/32 scram-sha-256` "
            "(hostssl when clients must use TLS) above any broader reject rule, then reload PostgreSQL (a reload needs approval).",
            host=host, user=user, db=db,
        )


def counters(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_database``: deadlocks, temp-file spills, rollbacks per database."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("database counters", output)
    result = Analysis(summary="; ".join(f"{r.get('datname')}: {r.get('temp_files')} temp files ({r.get('temp_size')}), "
                                        f"{r.get('deadlocks')} deadlocks" for r in rows[:4]))
    work_mem = (facts.get("pg_settings") or {}).get("work_mem", "")
    for r in rows:
        name, temp, deadlocks = r.get("datname"), int(r.get("temp_files") or 0), int(r.get("deadlocks") or 0)
        commits, rollbacks = int(r.get("xact_commit") or 0), int(r.get("xact_rollback") or 0)
        if temp >= 1000:
            mem = f" (work_mem is {int(work_mem) // 1024} MB)" if work_mem.isdigit() else ""
            result.facts["temp_spills"] = True
            result.add(
                "temp_spill", Severity.CAUSE,
                f"Database {name} has written {temp} temporary files, {r.get('temp_size')} in total: sorts, hashes and "
                f"aggregates larger than work_mem{mem} spill to disk under base/pgsql_tmp, and that fills the data volume "
                "while they run. Raise work_mem for the reporting role only (ALTER ROLE ... SET work_mem), rewrite the "
                "query, or set temp_file_limit.",
                database=name,
            )
        if deadlocks:
            result.add("deadlocks_counted", Severity.PROBLEM if deadlocks >= 5 else Severity.INFO,
                       f"Database {name} has recorded {deadlocks} deadlocks since its statistics were reset.", database=name)
        conflicts = int(r.get("conflicts") or 0)
        if conflicts:
            result.add("standby_conflicts", Severity.PROBLEM,
                       f"Database {name}: {conflicts} queries were cancelled by recovery conflicts on this standby (replay "
                       "removed rows they needed): hot_standby_feedback or max_standby_streaming_delay.", database=name)
        if rollbacks >= 1000 and commits and rollbacks / commits >= 0.02:
            result.add("rollbacks_high", Severity.PROBLEM,
                       f"Database {name}: {rollbacks} rollbacks for {commits} commits ({rollbacks * 100 / commits:.1f}%): "
                       "transactions fail often (errors such as duplicate keys roll them back).", database=name)
    return result


def xid_age(output: Output, facts: Facts) -> Analysis:
    """``age(datfrozenxid)``: how close each database is to transaction ID wraparound."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("XID age", output)
    result = Analysis(summary=", ".join(f"{r.get('datname')} {r.get('xid_age')}" for r in rows[:5]))
    for r in rows:
        age = int(r.get("xid_age") or 0)
        if age >= XID_WARN:
            result.add(
                "xid_wraparound", Severity.CAUSE,
                f"Database {r.get('datname')} is {age:,} transactions old (age(datfrozenxid)); at about 2.1 billion "
                "PostgreSQL stops accepting writes to prevent wraparound. Run VACUUM (FREEZE) on its oldest tables now, "
                "and find what blocks autovacuum (long transactions, idle in transaction, abandoned replication slots "
                "or prepared transactions).",
                database=r.get("datname"),
            )
    if rows and not result.findings:
        result.add("xid_ok", Severity.OK, f"Transaction ID age is far from wraparound (highest {rows[0].get('xid_age')}).")
    return result


def dead_tuples(output: Output, facts: Facts) -> Analysis:
    """``pg_stat_user_tables``: tables where dead rows pile up (vacuum falls behind)."""
    rows = psql_rows(output)
    if rows is None:
        return no_data("dead tuples", output)
    result = Analysis(summary=", ".join(f"{r.get('relname')} {r.get('n_dead_tup')} dead" for r in rows[:5]))
    for r in rows:
        live, dead = int(r.get("n_live_tup") or 0), int(r.get("n_dead_tup") or 0)
        if dead >= 100_000 and dead >= live * 0.2:
            result.add(
                "dead_tuples", Severity.PROBLEM,
                f"Table {r.get('relname')} has {dead:,} dead rows for {live:,} live ones (last autovacuum "
                f"{r.get('last_autovacuum') or 'never'}): vacuum is not keeping up, so the table bloats and scans slow "
                "down. Look for long transactions holding back cleanup, or tune its autovacuum scale factor.",
                table=r.get("relname"),
            )
    return result


# Server-log lines whose meaning depends on the other checks (settings, pids). Grouped, counted and quoted.
_TOO_MANY_FOR = re.compile(r"too many connections for (?P<kind>database|role) \"(?P<name>[^\"]+)\"")
_HBA_REJECT = re.compile(
    r'no pg_hba\.conf entry for host "(?P<host>[^"]+)", user "(?P<user>[^"]+)", database "(?P<db>[^"]+)"(?:, (?P<enc>no encryption|SSL encryption|GSS encryption|SSL off|SSL on))?'
)
_DUPLICATE = re.compile(r'duplicate key value violates unique constraint "(?P<constraint>[^"]+)"')
_TEMP = re.compile(r'temporary file: path "(?P<path>[^"]+)", size (?P<size>[0-9]+)')
_WRAP = re.compile(r'database "(?P<db>[^"]+)" must be vacuumed within (?P<n>[0-9]+) transactions|database is not accepting commands to avoid wraparound')


def log_findings(result: Analysis, parsed: list[lp.PgLogLine], facts: Facts) -> None:
    """Findings for the log lines below, added to ``pg.log``'s analysis."""
    by_level = [p for p in parsed if p.level in ("PANIC", "FATAL", "ERROR", "WARNING")]
    details = {p.pid: p.message for p in parsed if p.level == "DETAIL"}
    for p in by_level:
        if m := _TOO_MANY_FOR.search(p.message):
            kind, name = m["kind"], m["name"]
            column = "datconnlimit (ALTER DATABASE ... CONNECTION LIMIT)" if kind == "database" else "rolconnlimit (ALTER ROLE ... CONNECTION LIMIT)"
            result.facts["per_object_limit"] = True
            _once(result, "pg_conn_limit_object", Severity.CAUSE,
                  f"\"{p.message}\" is a per-{kind} limit, not max_connections: {kind} {name} has its own connection "
                  f"limit ({column}) and has reached it. Check it with `SELECT datname, datconnlimit FROM pg_database` / "
                  f"`SELECT rolname, rolconnlimit FROM pg_roles`; raise it, or find who holds {name}'s connections.",
                  name=name, kind=kind)
    reserved = [p for p in by_level if "remaining connection slots are reserved" in p.message]
    if reserved:
        setting = (facts.get("pg_settings") or {}).get("superuser_reserved_connections", "")
        limit = facts.get("max_connections", "max_connections")
        _once(result, "pg_reserved_slots", Severity.CAUSE,
              f"{len(reserved)} connections were refused with \"{reserved[-1].message}\": ordinary roles hold every "
              f"connection except the last superuser_reserved_connections{' = ' + setting if setting else ''} of the {limit}, kept for "
              "superusers. That is why a superuser (postgres) still gets in while the applications cannot: the server "
              "is up, but full. Find who holds the connections (below) and release them; raising max_connections is "
              "a restart.")
    shared = [p for p in by_level if "out of shared memory" in p.message]
    if shared:
        locks = (facts.get("pg_settings") or {}).get("max_locks_per_transaction", "64")
        conns = facts.get("max_connections", "max_connections")
        _once(result, "pg_lock_table_full", Severity.CAUSE,
              f"{len(shared)} statements failed with \"{shared[-1].level}: {shared[-1].message}\" and the hint to "
              f"increase max_locks_per_transaction: this is the shared lock table, not RAM. It holds about "
              f"max_locks_per_transaction ({locks}) x max_connections ({conns}) locks, and one transaction that "
              "touches many tables (an ALTER on a table with many partitions and their indexes) overflows it. Raise "
              "max_locks_per_transaction (e.g. to 256; it needs a restart), or run the change partition by partition.")
    dups = [(p, m) for p in by_level for m in [_DUPLICATE.search(p.message)] if m]
    if dups:
        constraint = dups[-1][1]["constraint"]
        keys = [details.get(p.pid, "") for p, _ in dups if details.get(p.pid)]
        detail = f" (\"{keys[-1]}\")" if keys else ""
        _once(result, "pg_duplicate_key", Severity.CAUSE,
              f"{len(dups)} inserts failed: \"{dups[-1][0].message}\"{detail}. When the key climbs by one per failed "
              f"insert, the sequence behind {constraint}'s column is behind the table's max(id) (typical after a "
              "restore or a data-only load): nextval() hands out ids that already exist. Nothing is corrupt. Fix: "
              "`SELECT setval(pg_get_serial_sequence('TABLE', 'id'), (SELECT max(id) FROM TABLE))` (a data change: "
              "run it yourself after checking).", constraint=constraint)
    temps = [(p, m) for p in parsed for m in [_TEMP.search(p.message)] if m]
    if temps:
        pids = Counter(p.pid for p, _ in temps)
        pid, count = pids.most_common(1)[0]
        total = sum(int(m["size"]) for _, m in temps) / 1024**3
        who = next((f"{p.user}@{p.database}" for p, _ in temps if p.pid == pid), "")
        result.facts["temp_spills"] = True
        _once(result, "pg_temp_spill", Severity.CAUSE,
              f"pid {pid} ({who}) wrote {count} temporary files in this log ({total:.1f} GB), e.g. \"{temps[-1][0].message}\": "
              "its sorts and aggregates do not fit in work_mem and spill to base/pgsql_tmp on the data volume.",
              pid=str(pid))
    timeouts = [p for p in by_level if "canceling statement due to lock timeout" in p.message]
    if timeouts:
        _once(result, "pg_lock_timeout", Severity.PROBLEM,
              f"{len(timeouts)} statements of {timeouts[-1].user or '?'} were cancelled by lock_timeout (SQLSTATE 55P03): "
              f"\"{timeouts[-1].message}\". They waited for a lock another session holds; see who holds it below.")
        result.facts["lock_timeouts"] = True
    admin = [p for p in by_level if "terminating connection due to administrator command" in p.message]
    if admin:
        crash = any(s in p.message for p in parsed for s in ("was interrupted", "terminated by signal", "all server processes terminated"))
        victims = {a.user for a in admin}
        supers = [m["user"] for p in parsed if p.level == "LOG" and p.time <= admin[0].time
                  for m in [re.search(r"connection authorized: user=(?P<user>\S+)", p.message)] if m and m["user"] not in victims]
        by = (f" Just before, {', '.join(dict.fromkeys(supers[-3:]))} connected: the terminations (pg_terminate_backend) "
              "most likely came from that session." if supers else "")
        _once(result, "pg_admin_terminate", Severity.CAUSE,
              f"{len(admin)} sessions ended with \"FATAL: {admin[-1].message}\" at {admin[0].time}: someone terminated "
              f"them (pg_terminate_backend, or a fast shutdown).{by}"
              + ("" if crash else " The server itself did not crash or restart: the log has no crash, shutdown or "
                 "recovery line."))
    wrap = [p for p in by_level if _WRAP.search(p.message)]
    if wrap:
        _once(result, "pg_wraparound", Severity.CAUSE,
              f"Transaction ID wraparound is near: \"{wrap[-1].level}: {wrap[-1].message}\". Vacuum (FREEZE) that "
              "database now; find what holds back autovacuum (long transactions, prepared transactions, replication slots).")
    deadlocks = [p for p in by_level if p.message.startswith("deadlock detected")]
    if deadlocks:
        detail = next((details[p.pid] for p in deadlocks if p.pid in details), "")
        _once(result, "pg_deadlock", Severity.CAUSE,
              f"The log shows {len(deadlocks)} deadlock(s) (\"{deadlocks[-1].message}\"{'; ' + detail[:240] if detail else ''}): "
              "two transactions locked the same rows in opposite orders and PostgreSQL aborted one. Nothing is blocked "
              "now; make the code take locks in one order (e.g. sorted ids) and retry on SQLSTATE 40P01.")
    hba = [m.groupdict() for p in by_level for m in [_HBA_REJECT.search(p.message)] if m]
    if hba:
        seen = {(h["host"], h["user"], h["db"]): h for h in hba}
        result.facts["hba_rejects"] = [{"host": h["host"], "user": h["user"], "db": h["db"], "encryption": h["enc"] or ""}
                                       for h in seen.values()]
    groups = Counter(_shape(p.message) for p in by_level)
    if len(groups) > 1 or (groups and max(groups.values()) > 1):
        result.add("pg_error_groups", Severity.INFO, "Errors in this log, by kind: " + "; ".join(
            f"{n} x {shape}" for shape, n in groups.most_common(8)) + ".")


def _shape(message: str) -> str:
    """A message with its variable parts (quoted names, numbers) folded, so repeats group together."""
    return re.sub(r"[0-9]+", "N", re.sub(r'"[^"]*"', '"…"', message))[:120]


def _once(result: Analysis, code: str, severity: Severity, text: str, **data: str) -> None:
    if not any(f.code == code for f in result.findings):
        result.add(code, severity, text, **data)


LOG_CODES = ("pg_admin_terminate", "pg_conn_limit_object", "pg_deadlock", "pg_duplicate_key", "pg_error_groups",
             "pg_lock_table_full", "pg_lock_timeout", "pg_reserved_slots", "pg_temp_spill", "pg_wraparound")
LOG_FACTS = ("hba_rejects", "lock_timeouts", "per_object_limit", "temp_spills")
