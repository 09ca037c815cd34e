"""Database checks (issue 12): the server log read to the end, pg_hba with a fix, counters, XID age."""

from __future__ import annotations

from collections.abc import Mapping

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

TABLE = load_analyzers(BUILTIN_BUNDLES / "database")
LOG = ["tail", "-n", "500", "/var/log/postgresql/postgresql-16-main.log"]


def run(name: str, stdout: str, facts: Mapping[str, object] | None = None, argv: list[str] | None = None) -> Analysis:
    return TABLE[name].fn(Output(argv=argv or ["psql"], exit_code=0, stdout=stdout, stderr=""), dict(facts or {}))


def finding(result: Analysis, code: str) -> str:
    return next(f.text for f in result.findings if f.code == code)


def test_too_many_connections_for_a_database_is_a_per_database_limit() -> None:
    log = '2026-12-07 11:02:03.114 UTC [8812] app@reports FATAL:  too many connections for database "reports"\n'
    text = finding(run("pg.log", log, argv=LOG), "pg_conn_limit_object")
    assert "datconnlimit" in text and "not max_connections" in text


def test_reserved_slots_explain_why_the_superuser_still_gets_in() -> None:
    log = ("2026-12-07 10:51:02.114 UTC [9912] ledger@ledger FATAL:  remaining connection slots are reserved for roles "
           "with the SUPERUSER attribute\n")
    facts = {"max_connections": 200, "pg_settings": {"superuser_reserved_connections": "5"}}
    text = finding(run("pg.log", log, facts, LOG), "pg_reserved_slots")
    assert "superuser_reserved_connections = 5 of the 200" in text


def test_out_of_shared_memory_is_the_lock_table_not_ram() -> None:
    log = ("2026-12-07 11:41:09.918 UTC [77120] migrator@events ERROR:  out of shared memory\n"
           "2026-12-07 11:41:09.918 UTC [77120] migrator@events HINT:  You might need to increase max_locks_per_transaction.\n")
    text = finding(run("pg.log", log, {"max_connections": 100, "pg_settings": {"max_locks_per_transaction": "64"}}, LOG),
                   "pg_lock_table_full")
    assert "max_locks_per_transaction (64) x max_connections (100)" in text and "restart" in text


def test_duplicate_keys_after_a_restore_point_at_the_sequence() -> None:
    log = ('2026-12-07 11:58:40.118 UTC [60211] shop_app@shopdb ERROR:  duplicate key value violates unique constraint "orders_pkey"\n'
           "2026-12-07 11:58:40.118 UTC [60211] shop_app@shopdb DETAIL:  Key (id)=(1048239) already exists.\n")
    text = finding(run("pg.log", log, argv=LOG), "pg_duplicate_key")
    assert "orders_pkey" in text and "Key (id)=(1048239) already exists." in text and "setval" in text


def test_deadlocks_in_the_log_are_found_although_nothing_blocks_now() -> None:
    log = ("2026-12-07 09:12:01.004 UTC [4411] app@shop ERROR:  deadlock detected\n"
           "2026-12-07 09:12:01.004 UTC [4411] app@shop DETAIL:  Process 4411 waits for ShareLock on transaction 9912; "
           "blocked by process 4420.\n")
    result = run("pg.log", log, argv=LOG)
    assert "40P01" in finding(result, "pg_deadlock") and "Process 4411 waits" in finding(result, "pg_deadlock")


def test_administrator_terminations_are_not_a_crash_and_name_the_session() -> None:
    log = ("2026-12-07 10:14:21.352 UTC [2841771] LOG:  connection authorized: user=dba_kw database=crm application_name=psql\n"
           "2026-12-07 10:15:03.118 UTC [2790112] crm_app@crm FATAL:  terminating connection due to administrator command\n"
           "2026-12-07 10:15:03.119 UTC [2790115] crm_app@crm FATAL:  terminating connection due to administrator command\n")
    text = finding(run("pg.log", log, argv=LOG), "pg_admin_terminate")
    assert "dba_kw" in text and "did not crash" in text


def test_repeated_errors_are_grouped_with_counts() -> None:
    line = '2026-12-07 11:0{i}:00.000 UTC [10{i}] app@db ERROR:  relation "t{i}" does not exist\n'
    result = run("pg.log", "".join(line.format(i=i) for i in range(3)), argv=LOG)
    assert '3 x relation "…" does not exist' in finding(result, "pg_error_groups")


def test_an_empty_log_is_no_data() -> None:
    result = run("pg.log", "", argv=LOG)
    assert [f.code for f in result.findings] == ["no_data"]


HBA = ("line_number|type|database|user_name|address|netmask|auth_method|error\n"
       "125|host|{all}|{all}|127.0.0.1|255.255.255.255|scram-sha-256|\n"
       "138|hostssl|{warehouse}|{etl,loader}|10.20.0.0|255.255.0.0|scram-sha-256|\n")


def test_a_client_without_tls_against_a_hostssl_rule_gets_the_fix() -> None:
    facts = {"hba_rejects": [{"host": "10.20.4.31", "user": "etl", "db": "warehouse", "encryption": "no encryption"}]}
    text = finding(run("pg.hba_rules", HBA, facts), "hba_ssl_required")
    assert "line 138" in text and "sslmode=require" in text and "host warehouse etl 10.20.4.31/32 scram-sha-256" in text


def test_a_client_no_rule_admits_gets_the_line_to_add() -> None:
    facts = {"hba_rejects": [{"host": "172.16.0.9", "user": "app", "db": "shop", "encryption": ""}]}
    text = finding(run("pg.hba_rules", HBA, facts), "hba_missing")
    assert "hostssl shop app 172.16.0.9/32 scram-sha-256" in text


def test_temp_file_spills_and_xid_age() -> None:
    counters = ("datname|xact_commit|xact_rollback|deadlocks|conflicts|temp_files|temp_size\n"
                "analytics|91204433|10412|0|0|14211|388 GB\n")
    result = run("pg.counters", counters, {"pg_settings": {"work_mem": "4096"}})
    assert "work_mem is 4 MB" in finding(result, "temp_spill") and result.facts["temp_spills"] is True
    xid = run("pg.xid_age", "datname|xid_age\nbilling|1480211877\npostgres|210044\n")
    assert any(f.code == "xid_wraparound" and f.severity == Severity.CAUSE for f in xid.findings)


def test_an_idle_database_is_not_the_bottleneck() -> None:
    rows = ("datname|usename|application_name|state|connections|longest_in_state\n"
            "app|app_rw|orders-api|idle|9|00:00:41.208113\n"
            "app|app_rw|orders-api|active|1|00:00:00.000912\n")
    result = run("pg.connections", rows, {"max_connections": 200, "no_long_queries": True, "no_blocking": True})
    assert "not the bottleneck" in finding(result, "db_not_bottleneck")
    busy = run("pg.connections", rows, {"max_connections": 200, "no_long_queries": True})
    assert not any(f.code == "db_not_bottleneck" for f in busy.findings)
