"""Database and security squads, issue 12 second round: the db-* and sec-* classes of TAXONOMY.md
read from realistic outputs (server-log lines, psql tables, auth.log, lastb, getent group, sshd -T)."""

from __future__ import annotations

from collections.abc import Mapping

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

DB = load_analyzers(BUILTIN_BUNDLES / "database")
SEC = load_analyzers(BUILTIN_BUNDLES / "security")
LOG = ["tail", "-n", "500", "/var/log/postgresql/postgresql-16-main.log"]


def run(table: dict, name: str, stdout: str, facts: Mapping[str, object] | None = None,
        argv: list[str] | None = None, exit_code: int = 0) -> Analysis:
    return table[name].fn(Output(argv=argv or ["psql"], exit_code=exit_code, stdout=stdout, stderr=""), dict(facts or {}))


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.findings}


def finding(result: Analysis, code: str) -> str:
    return next(f.text for f in result.findings if f.code == code)


def pglog(*lines: str) -> str:
    return "".join(f"2026-12-07 11:{i:02d}:03.114 UTC [{4100 + i}] {line}\n" for i, line in enumerate(lines))


def test_statement_timeout_names_the_setting() -> None:
    log = pglog("report@analytics ERROR:  canceling statement due to statement timeout",
                "report@analytics STATEMENT:  SELECT * FROM big")
    result = run(DB, "pg.log", log, {"pg_settings": {"statement_timeout": "5000"}}, LOG)
    assert "statement_timeout = 5000ms" in finding(result, "pg_statement_timeout")
    assert "pg_log_error" not in codes(result)  # recognised, not "last error in the log"


def test_idle_in_transaction_timeout_explains_server_closed_the_connection() -> None:
    log = pglog("app@shop FATAL:  terminating connection due to idle-in-transaction timeout")
    text = finding(run(DB, "pg.log", log, {"pg_settings": {"idle_in_transaction_session_timeout": "60000"}}, LOG),
                   "pg_idle_tx_timeout")
    assert "idle_in_transaction_session_timeout = 60000ms" in text and "server closed the connection" in text


def test_archive_failures_and_removed_wal_and_promotion_are_causes() -> None:
    log = pglog('LOG:  archive command failed with exit code 1',
                'DETAIL:  The failed archive command was: test ! -f /mnt/wal/000000010000002A000000F1 && cp pg_wal/000000010000002A000000F1 /mnt/wal/',
                'WARNING:  archiving write-ahead log file "000000010000002A000000F1" failed too many times, will try again later',
                'ERROR:  requested WAL segment 000000010000002A000000FE has already been removed',
                'LOG:  received promote request', 'LOG:  selected new timeline ID: 2')
    result = run(DB, "pg.log", log, {}, LOG)
    assert {"pg_archive_failing", "pg_wal_removed", "pg_promoted"} <= codes(result)
    assert result.facts["archive_failing"] is True
    assert "000000010000002A000000FE" in finding(result, "pg_wal_removed")


def test_authentication_method_lines() -> None:
    log = pglog('app@orders FATAL:  password authentication failed for user "app"',
                'app@orders DETAIL:  User "app" does not have a valid SCRAM secret.',
                'app@app FATAL:  Peer authentication failed for user "app"',
                'LOG:  invalid authentication method "md6"', 'LOG:  pg_hba.conf was not reloaded')
    result = run(DB, "pg.log", log, {}, LOG)
    assert {"pg_scram_missing", "pg_peer_auth", "pg_hba_not_reloaded"} <= codes(result)


def test_missing_objects_bad_config_pending_restart() -> None:
    log = pglog('svc@orders_prod FATAL:  database "orders_prod" does not exist',
                'app@shop ERROR:  relation "invoices" does not exist at character 15',
                'LOG:  invalid value for parameter "shared_buffers": "8GBB"',
                'FATAL:  configuration file "/etc/postgresql/16/main/postgresql.conf" contains errors',
                'LOG:  parameter "max_connections" cannot be changed without restarting the server')
    result = run(DB, "pg.log", log, {}, LOG)
    assert "orders_prod" in finding(result, "pg_missing_object")
    assert "migration" in finding(result, "pg_missing_relation")
    assert {"pg_bad_config", "pg_restart_pending"} <= codes(result)


def test_storage_corruption_and_read_only_set_storage_suspect() -> None:
    log = pglog('WARNING:  page verification failed, calculated checksum 20919 but expected 15254',
                'app@shop ERROR:  invalid page in block 4123 of relation base/16384/24576',
                'PANIC:  could not fsync file "base/16384/16397": Input/output error',
                'app@shop ERROR:  could not create file "base/16384/99812": Read-only file system')
    result = run(DB, "pg.log", log, {}, LOG)
    assert {"pg_corruption", "pg_io_error", "pg_read_only_fs"} <= codes(result)
    assert result.facts["storage_suspect"] is True


def test_xmin_checkpoints_serialization_fds() -> None:
    log = pglog('LOG:  automatic vacuum of table "shop.public.orders": index scans: 1\n\ttuples: 0 removed, 2000000 remain, '
                '48000000 are dead but not yet removable, oldest xmin: 918273',
                'LOG:  checkpoints are occurring too frequently (9 seconds apart)',
                'app@shop ERROR:  could not serialize access due to concurrent update',
                'LOG:  out of file descriptors: Too many open files; release and retry')
    result = run(DB, "pg.log", log, {"pg_settings": {"max_wal_size": "1024"}}, LOG)
    assert "918273" in finding(result, "pg_xmin_horizon") and result.facts["xmin_held"] is True
    assert "max_wal_size = 1024MB" in finding(result, "pg_checkpoints_frequent")
    assert {"pg_serialization", "pg_out_of_fds"} <= codes(result)


def test_listen_on_loopback_only() -> None:
    log = pglog('LOG:  listening on IPv4 address "127.0.0.1", port 5432', 'LOG:  listening on IPv6 address "::1", port 5432',
                'LOG:  listening on Unix socket "/var/run/postgresql/.s.PGSQL.5432"',
                'LOG:  database system is ready to accept connections')
    assert "connection refused" in finding(run(DB, "pg.log", log, {}, LOG), "pg_listen_local")
    wide = pglog('LOG:  listening on IPv4 address "0.0.0.0", port 5432')
    assert "pg_listen_local" not in codes(run(DB, "pg.log", wide, {}, LOG))


def test_routine_log_is_named_routine_and_an_error_log_is_not() -> None:
    log = pglog("LOG:  checkpoint starting: time", "LOG:  checkpoint complete: wrote 1821 buffers (0.9%)",
                'LOG:  automatic vacuum of table "app.public.events": index scans: 1',
                "[unknown]@[unknown] LOG:  connection received: host=10.0.0.7 port=51234")
    result = run(DB, "pg.log", log, {}, LOG)
    text = finding(result, "pg_log_routine")
    assert "2 checkpoints" in text and "1 autovacuum run" in text and "1 connection" in text
    bad = pglog("LOG:  checkpoint starting: time", 'app@shop ERROR:  relation "x" does not exist')
    assert "pg_log_routine" not in codes(run(DB, "pg.log", bad, {}, LOG))


def test_inactive_slot_retaining_wal() -> None:
    out = ("slot_name|slot_type|database|active|wal_status|retained_wal\n"
           "replica2|physical||f|extended|182 GB\n"
           "replica1|physical||t|reserved|16 MB\n")
    result = run(DB, "pg.slots", out)
    assert "replica2" in finding(result, "slot_inactive") and result.facts["slot_retains_wal"] is True
    assert "slot_inactive" not in codes(run(DB, "pg.slots", out.splitlines()[0] + "\nreplica1|physical||t|reserved|16 MB\n"))
    assert "no_data" in codes(run(DB, "pg.slots", "", exit_code=1))


def test_archiver_failing_now_vs_recovered() -> None:
    head = "archived_count|last_archived_wal|last_archived_time|failed_count|last_failed_wal|last_failed_time\n"
    failing = head + ("81234|000000010000002A000000F0|2026-12-06 22:01:04.112+00|412|000000010000002A000000F1|"
                      "2026-12-07 11:58:40.004+00\n")
    assert "000000010000002A000000F1" in finding(run(DB, "pg.archiver", failing), "archive_failing")
    recovered = head + ("81234|000000010000002A000000F0|2026-12-07 11:59:04.112+00|3|000000010000002A000000A1|"
                        "2026-12-01 10:00:00.004+00\n")
    assert codes(run(DB, "pg.archiver", recovered)) == {"archive_ok"}


def test_synchronous_standby_missing_after_no_replicas() -> None:
    settings = "name|setting|unit|source\nsynchronous_standby_names|replica1||configuration file\n"
    result = run(DB, "pg.settings", settings, {"no_replicas": True})
    assert "replica1" in finding(result, "sync_standby_missing")
    assert "sync_standby_missing" not in codes(run(DB, "pg.settings", settings, {}))


def test_one_database_dominates_and_conflicts_counted() -> None:
    sizes = "datname|size\nanalytics|480 GB\nshop|12 GB\npostgres|8537 kB\n"
    assert "analytics" in finding(run(DB, "pg.sizes", sizes), "database_dominant")
    counters = ("datname|xact_commit|xact_rollback|deadlocks|conflicts|temp_files|temp_size\n"
                "reports|120000|40|0|87|0|0 bytes\n")
    assert "87" in finding(run(DB, "pg.counters", counters), "standby_conflicts")


def test_idle_transaction_for_hours_holds_back_vacuum() -> None:
    out = ("pid|usename|datname|state|runtime|wait_event_type|query\n"
           "7712|etl|shop|idle in transaction|2 days 03:12:44.1|Client|BEGIN; SELECT * FROM orders WHERE id = 1\n")
    result = run(DB, "pg.long_queries", out)
    assert "7712" in finding(result, "xmin_holder")
    assert next(f for f in result.findings if f.code == "xmin_holder").severity is Severity.CAUSE


def test_service_account_in_sudo_is_a_cause_and_a_missing_group_is_not_no_data() -> None:
    result = run(SEC, "sec.group", "sudo:x:27:alice,www-data\n", argv=["getent", "group", "sudo"])
    assert "www-data" in finding(result, "group_service_account")
    assert "alice, www-data" in finding(result, "group_members")
    assert codes(run(SEC, "sec.group", "", argv=["getent", "group", "wheel"], exit_code=2)) == set()
    assert codes(run(SEC, "sec.group", "sudo:x:27:alice\n", argv=["getent", "group", "sudo"])) == {"group_members"}


def test_lastb_spraying_vs_one_guesser_vs_empty() -> None:
    spray = "".join(f"user{i:<5} ssh:notty    203.0.{i // 50}.{i % 250 + 1}    Mon Dec  7 03:{i % 60:02d} - 03:{i % 60:02d}  (00:00)\n"
                    for i in range(60)) + "\nbtmp begins Sun Dec  6 00:00:01 2026\n"
    result = run(SEC, "sec.lastb", spray, argv=["lastb", "-n", "1000"])
    assert "60 different sources" in finding(result, "lastb_spraying")
    one = "".join("root     ssh:notty    45.135.232.9     Mon Dec  7 03:12 - 03:12  (00:00)\n" for _ in range(40))
    assert "45.135.232.9" in finding(run(SEC, "sec.lastb", one + "\nbtmp begins Sun Dec  6 00:00:01 2026\n"), "lastb_bruteforce")
    assert "no_data" in codes(run(SEC, "sec.lastb", "", exit_code=1))
    assert codes(run(SEC, "sec.lastb", "\nbtmp begins Sun Dec  6 00:00:01 2026\n")) == {"lastb_none"}
