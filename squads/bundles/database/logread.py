"""More PostgreSQL server-log lines whose meaning is certain (issue 12, the db-* classes of TAXONOMY.md):
timeouts, archiving and replication, promotion, authentication methods, missing objects, bad
configuration, storage and corruption. Each rule reads the settings the other checks found, so the
sentence says which setting did it. Called from ``pg.log`` (``analyzers/serverlog.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp


def _setting(facts: Facts, name: str, unit: str = "") -> str:
    value = (facts.get("pg_settings") or {}).get(name, "")
    return f"{name} = {value}{unit}" if value else f"{name} (not in the non-default settings)"


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    code: str
    severity: Severity
    text: Callable[[re.Match[str], lp.PgLogLine, int, Facts], str]
    fact: str = ""


def _quote(p: lp.PgLogLine) -> str:
    return f"\"{p.level}: {p.message[:220]}\""


RULES = [
    Rule(re.compile(r"canceling statement due to statement timeout"), "pg_statement_timeout", Severity.CAUSE,
         lambda m, p, n, f: f"{n} statement(s) were cancelled by statement_timeout ({_quote(p)}, user {p.user or '?'}): "
         f"{_setting(f, 'statement_timeout', 'ms')}. A query that stops after exactly that long is this limit, not a "
         "crash: raise it for that role or database (ALTER ROLE ... SET statement_timeout) or make the query faster."),
    Rule(re.compile(r"terminating connection due to idle-in-transaction timeout"), "pg_idle_tx_timeout", Severity.CAUSE,
         lambda m, p, n, f: f"{n} session(s) were closed by idle_in_transaction_session_timeout ({_quote(p)}): "
         f"{_setting(f, 'idle_in_transaction_session_timeout', 'ms')}. The application opened a transaction and went "
         "idle longer than that, so the server closed the connection and the client saw \"server closed the connection "
         "unexpectedly\". Fix the code path that leaves transactions open, or raise the timeout for that role."),
    Rule(re.compile(r"archive command failed with exit code (?P<code>[0-9]+)|archiving (?:write-ahead log|WAL) file "
                    r"\"?(?P<wal>[0-9A-F]{24})\"? failed too many times"), "pg_archive_failing", Severity.CAUSE,
         lambda m, p, n, f: f"WAL archiving fails ({n} line(s), last {_quote(p)}): until archive_command succeeds, "
         "PostgreSQL keeps every WAL segment in pg_wal, so the disk fills and backups (PITR) have a gap. Run the "
         f"archive_command by hand as postgres to see its error ({_setting(f, 'archive_command')}).",
         fact="archive_failing"),
    Rule(re.compile(r"requested WAL segment (?P<wal>[0-9A-F]{24}) has already been removed"), "pg_wal_removed", Severity.CAUSE,
         lambda m, p, n, f: f"The replica asked for WAL segment {m['wal']}, which the primary has already recycled "
         f"({_quote(p)}): it can never catch up by streaming. Rebuild it (pg_basebackup), and keep WAL for it next "
         "time with a replication slot or a larger wal_keep_size."),
    Rule(re.compile(r"invalidating (?:obsolete )?replication slot \"(?P<slot>[^\"]+)\""), "pg_slot_invalidated", Severity.CAUSE,
         lambda m, p, n, f: f"Replication slot {m['slot']} was invalidated ({_quote(p)}): it retained more WAL than "
         "max_slot_wal_keep_size allows, so the replica using it must be rebuilt."),
    Rule(re.compile(r"canceling statement due to conflict with recovery"), "pg_standby_conflict", Severity.CAUSE,
         lambda m, p, n, f: f"{n} queries on this standby were cancelled by recovery conflicts ({_quote(p)}): the "
         "primary removed row versions they still needed, and replay does not wait longer than "
         f"{_setting(f, 'max_standby_streaming_delay', 'ms')}. Turn on hot_standby_feedback, raise "
         "max_standby_streaming_delay for a reporting replica, or run long reports elsewhere."),
    Rule(re.compile(r"received promote request|selected new timeline ID: (?P<tli>[0-9]+)"), "pg_promoted", Severity.CAUSE,
         lambda m, p, n, f: f"This server was promoted: the log says {_quote(p)}. It left recovery and now accepts "
         "writes as a primary on a new timeline; the old primary and this one have diverged. Find who promoted it "
         "(pg_ctl promote, a failover tool, a trigger file) and decide which one is the primary before writes land on both."),
    Rule(re.compile(r'User "(?P<user>[^"]+)" does not have a valid SCRAM secret'), "pg_scram_missing", Severity.CAUSE,
         lambda m, p, n, f: f"Role {m['user']} has no SCRAM password ({_quote(p)}): its password was stored as md5, and "
         "pg_hba.conf now asks for scram-sha-256, so even the right password fails. Set the password again with "
         "password_encryption = scram-sha-256 (\\password in psql)."),
    Rule(re.compile(r'Peer authentication failed for user "(?P<user>[^"]+)"'), "pg_peer_auth", Severity.CAUSE,
         lambda m, p, n, f: f"Peer authentication rejected {m['user']} on the local socket ({_quote(p)}): with `peer`, "
         f"only the operating-system user {m['user']} may connect as that role. Connect over TCP (-h 127.0.0.1) with a "
         "password, run psql as that OS user, or add a pg_ident map."),
    Rule(re.compile(r"pg_hba\.conf was not reloaded|invalid authentication method \"(?P<method>[^\"]+)\""), "pg_hba_not_reloaded",
         Severity.CAUSE,
         lambda m, p, n, f: f"The last pg_hba.conf change was rejected ({_quote(p)}): the server keeps the old rules, "
         "so the new rule does nothing. Fix the line the log names (pg_hba_file_rules shows it in its error column) and reload."),
    Rule(re.compile(r'(?P<kind>role|database) "(?P<name>[^"]+)" does not exist'), "pg_missing_object", Severity.CAUSE,
         lambda m, p, n, f: f"{n} connection(s) asked for {m['kind']} {m['name']}, which does not exist ({_quote(p)}): "
         f"a typo in the client's settings, or the {m['kind']} was never created on this server."),
    Rule(re.compile(r'relation "(?P<name>[^"]+)" does not exist'), "pg_missing_relation", Severity.CAUSE,
         lambda m, p, n, f: f"{n} statement(s) failed because table {m['name']} does not exist ({_quote(p)}): the "
         "application expects a schema this database does not have, typically a release deployed before its "
         "migration ran (or a wrong search_path/database). Run the migration, or roll the release back."),
    Rule(re.compile(r'invalid value for parameter "(?P<name>[^"]+)"|configuration file "(?P<file>[^"]+)" contains errors'
                    r'|unrecognized configuration parameter "(?P<bad>[^"]+)"'), "pg_bad_config", Severity.CAUSE,
         lambda m, p, n, f: f"The configuration has an error: {_quote(p)}. PostgreSQL refuses to start with it (a "
         "reload keeps the old value). Fix that line in postgresql.conf (or postgresql.auto.conf), then start it."),
    Rule(re.compile(r'parameter "(?P<name>[^"]+)" cannot be changed without restarting the server'), "pg_restart_pending",
         Severity.CAUSE,
         lambda m, p, n, f: f"{m['name']} was changed but only reloaded ({_quote(p)}): the server still runs with the "
         f"old value until it restarts. A restart applies it (it needs approval)."),
    Rule(re.compile(r"are dead but not yet removable, oldest xmin: (?P<xmin>[0-9]+)"), "pg_xmin_horizon", Severity.CAUSE,
         lambda m, p, n, f: f"Vacuum runs but cannot remove dead rows: {_quote(p)}. Something keeps the xmin horizon at "
         f"{m['xmin']}: a long transaction or a session idle in transaction (below), a replication slot or a "
         "prepared transaction. End it and the next vacuum cleans up.", fact="xmin_held"),
    Rule(re.compile(r"checkpoints are occurring too frequently \((?P<secs>[0-9]+) seconds? apart\)"), "pg_checkpoints_frequent",
         Severity.CAUSE,
         lambda m, p, n, f: f"Checkpoints come every {m['secs']} s ({n} warnings): WAL fills max_wal_size before "
         f"checkpoint_timeout, and every checkpoint flushes all dirty pages (the I/O spikes). "
         f"{_setting(f, 'max_wal_size', 'MB')}: raise it (e.g. to several GB) for the bulk load."),
    Rule(re.compile(r"page verification failed|invalid page in block (?P<block>[0-9]+) of relation (?P<rel>\S+)"
                    r"|could not read block (?P<rblock>[0-9]+) in file"), "pg_corruption", Severity.CAUSE,
         lambda m, p, n, f: f"Data corruption: {_quote(p)}. A page on disk does not match its checksum, so queries that "
         "touch it fail while the rest works. Check the disk (kernel log), restore the table from a backup or a "
         "replica; do not run zero_damaged_pages unless you accept losing those rows.", fact="storage_suspect"),
    Rule(re.compile(r"Input/output error"), "pg_io_error", Severity.CAUSE,
         lambda m, p, n, f: f"The storage returned I/O errors to PostgreSQL ({_quote(p)}): a failing disk or volume, "
         "not a PostgreSQL bug. The kernel log names the device; move the data off it (a replica, a backup) before "
         "restarting again.", fact="storage_suspect"),
    Rule(re.compile(r"Read-only file system"), "pg_read_only_fs", Severity.CAUSE,
         lambda m, p, n, f: f"Writes fail because the file system is read-only ({_quote(p)}): the kernel remounts a file "
         "system read-only after I/O or journal errors. The kernel log says why; fix the disk, fsck, then remount.",
         fact="storage_suspect"),
    Rule(re.compile(r"could not serialize access due to (?P<why>concurrent update|read/write dependencies)"), "pg_serialization",
         Severity.CAUSE,
         lambda m, p, n, f: f"{n} transactions failed with a serialization failure ({_quote(p)}, SQLSTATE 40001): under "
         "REPEATABLE READ or SERIALIZABLE, concurrent transactions touched the same rows. That is expected: the "
         "application must retry them; shorter transactions make it rarer."),
    Rule(re.compile(r"out of file descriptors|Too many open files"), "pg_out_of_fds", Severity.CAUSE,
         lambda m, p, n, f: f"PostgreSQL ran out of file descriptors ({n} line(s), {_quote(p)}): raise the service's "
         f"LimitNOFILE (and fs.file-max) or lower {_setting(f, 'max_files_per_process')}."),
]
MARKERS = tuple(r.pattern for r in RULES)
CODES = tuple(r.code for r in RULES) + ("pg_listen_local", "pg_log_routine")
FACTS = tuple(sorted({r.fact for r in RULES if r.fact}))

_LISTEN = re.compile(r'listening on (?:IPv4|IPv6) address "(?P<address>[^"]+)", port (?P<port>[0-9]+)')


def recognised(p: lp.PgLogLine) -> bool:
    """Whether one of the rules reads this line (so it is not also the "last error in the log")."""
    return any(pattern.search(p.message) for pattern in MARKERS)


def continued(text: str, parsed: list[lp.PgLogLine]) -> list[lp.PgLogLine]:
    """``parsed`` with each message's continuation lines joined to it: PostgreSQL writes multi-line
    messages (autovacuum's report, a query) with the later lines indented, and those carry the detail."""
    lines = text.splitlines()
    joined: list[lp.PgLogLine] = []
    index = 0
    for raw in lines:
        if joined and raw[:1] in ("\t", " ") and raw.strip():
            last = joined[-1]
            joined[-1] = lp.PgLogLine(last.time, last.pid, last.user, last.database, last.level, f"{last.message} {raw.strip()}")
        elif index < len(parsed) and lp.parse_pg_log(raw) is not None:
            joined.append(parsed[index])
            index += 1
    return joined + parsed[index:]


def log_findings(result: Analysis, parsed: list[lp.PgLogLine], facts: Facts, text: str = "") -> None:
    """Add a finding per rule that matches, with the count and the latest line quoted."""
    parsed = continued(text, parsed) if text else parsed
    for rule in RULES:
        hits = [(p, m) for p in parsed for m in [rule.pattern.search(p.message)] if m]
        if not hits:
            continue
        line, match = hits[-1]
        result.add(rule.code, rule.severity, rule.text(match, line, len(hits), facts))
        if rule.fact:
            result.facts[rule.fact] = True
    _routine(result, parsed)
    # The last start-up's listening lines: loopback only means remote clients get "connection refused".
    listens = [m for p in parsed for m in [_LISTEN.search(p.message)] if m]
    if listens:
        last_port = listens[-1]["port"]
        addresses = [m["address"] for m in listens if m["port"] == last_port][-4:]
        if all(a in ("127.0.0.1", "::1", "localhost") for a in addresses):
            result.add(
                "pg_listen_local", Severity.CAUSE,
                f"PostgreSQL listens only on {', '.join(dict.fromkeys(addresses))} port {last_port} (its start-up lines): "
                "local psql works, but every other host gets \"connection refused\". Set listen_addresses to the "
                "server's private address (or '*', with pg_hba.conf limiting who may connect) and restart (needs approval).",
            )


ROUTINE = (("checkpoint", "checkpoint"), ("automatic vacuum", "autovacuum run"), ("automatic analyze", "autoanalyze run"),
           ("connection received", "connection"), ("connection authorized", "connection"), ("disconnection:", "disconnection"),
           ("duration:", "slow-statement log line"), ("temporary file", "temporary-file line"))


def _routine(result: Analysis, parsed: list[lp.PgLogLine]) -> None:
    """A log with no warning or error: say which routine messages it holds, so "clean" has its evidence."""
    if any(p.level in ("PANIC", "FATAL", "ERROR", "WARNING") for p in parsed):
        return
    counts: dict[str, int] = {}
    for p in parsed:
        kind = next((name for needle, name in ROUTINE if needle in p.message.lower()), "")
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    if counts:
        listed = ", ".join(f"{n} {kind}{'s' if n > 1 and not kind.endswith('line') else ''}" for kind, n in counts.items())
        result.add("pg_log_routine", Severity.OK,
                   f"The server log has no warning, error or fatal line in its last {len(parsed)} lines: only routine "
                   f"messages ({listed}).")
