"""Reading the PostgreSQL server log: PANIC/FATAL reasons, the server's life story, and the catalogue for the rest."""

from __future__ import annotations

import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as CATALOGUE_CODES
from squads.brain.known_errors import FACTS as CATALOGUE_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp

from .. import checks, logread

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
