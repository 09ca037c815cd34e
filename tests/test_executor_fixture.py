"""FixtureExecutor and CommandPattern: the matching rules of scenarios/FORMAT.md."""

from __future__ import annotations

import shlex

import pytest
import yaml

from tools.executors.base import TRUNCATION_MARKER, output_digest
from tools.executors.fixture import CommandPattern, Fixture, FixtureExecutor, argv_tokens
from tests.paths import PUBLIC_SCENARIOS

SCENARIOS = PUBLIC_SCENARIOS

PSQL = ["/usr/bin/psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c"]
SQL = {
    "max_connections": "SHOW max_connections",
    "connections": (
        "SELECT datname, usename, application_name, state, count(*) AS connections, "
        "max(now() - state_change) AS longest_in_state FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' GROUP BY 1, 2, 3, 4 ORDER BY connections DESC"
    ),
    "long_queries": (
        "SELECT pid, usename, datname, state, now() - query_start AS runtime, wait_event_type, "
        "left(query, 120) AS query FROM pg_stat_activity WHERE state <> 'idle' AND "
        "backend_type = 'client backend' ORDER BY runtime DESC LIMIT 20"
    ),
    "blocking": (
        "SELECT blocked.pid AS blocked_pid, blocked.usename AS blocked_user, now() - blocked.query_start "
        "AS blocked_for, left(blocked.query, 80) AS blocked_query, blocking.pid AS blocking_pid, "
        "blocking.usename AS blocking_user, blocking.state AS blocking_state, left(blocking.query, 80) "
        "AS blocking_query FROM pg_stat_activity blocked JOIN pg_stat_activity blocking ON "
        "blocking.pid = ANY(pg_blocking_pids(blocked.pid)) ORDER BY blocked_for DESC"
    ),
}


def matches(pattern: str, argv: list[str]) -> bool:
    return CommandPattern(pattern).matches(argv)


# --- the rules, one by one -------------------------------------------------


def test_program_matches_argv0_or_its_base_name() -> None:
    assert matches("kubectl top nodes", ["kubectl", "top", "nodes"])
    assert matches("kubectl top nodes", ["/usr/local/bin/kubectl", "top", "nodes"])
    assert not matches("kubectl top nodes", ["/usr/bin/kubectl-old", "top", "nodes"])
    assert not matches("kubectl top nodes", ["/usr/bin/oc", "top", "nodes"])
    # the program is matched by the first token only, not anywhere in argv
    assert not matches("top nodes", ["/usr/bin/kubectl", "top", "nodes"])


def test_program_token_may_be_a_glob_or_alternatives() -> None:
    assert matches("journal* -u nginx", ["/bin/journalctl", "-u", "nginx"])
    assert matches("apache2ctl|apachectl configtest", ["/usr/sbin/apachectl", "configtest"])
    assert not matches("apache2ctl|apachectl configtest", ["/usr/sbin/httpd", "configtest"])


def test_other_tokens_match_in_any_order() -> None:
    pattern = "kubectl logs payment-service-7d9f8b-xyz -n|--namespace production"
    assert matches(pattern, ["/usr/bin/kubectl", "-n", "production", "logs", "payment-service-7d9f8b-xyz"])
    assert matches(pattern, ["/usr/bin/kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production"])
    assert not matches(pattern, ["/usr/bin/kubectl", "logs", "payment-service-7d9f8b-xyz"])
    assert not matches(pattern, ["/usr/bin/kubectl", "logs", "other-pod", "-n", "production"])


def test_extra_argv_tokens_do_not_prevent_a_match() -> None:
    assert matches("systemctl status nginx", ["/usr/bin/systemctl", "status", "nginx", "--no-pager"])
    assert matches("last -n", ["/usr/bin/last", "-n", "50"])


def test_long_option_with_value_is_split() -> None:
    assert argv_tokens(["/usr/bin/kubectl", "--namespace=production", "--sort-by=.a=b", "-l=x", "a=b"]) == [
        "/usr/bin/kubectl",
        "--namespace",
        "production",
        "--sort-by",
        ".a=b",
        "-l=x",
        "a=b",
    ]
    pattern = "kubectl get pods -n|--namespace production"
    assert matches(pattern, ["/usr/bin/kubectl", "get", "pods", "--namespace=production"])
    assert matches("kubectl logs p --tail 50", ["/usr/bin/kubectl", "logs", "p", "--tail=50"])
    # only `--` elements are split; a single-dash `-n=production` stays whole
    assert not matches(pattern, ["/usr/bin/kubectl", "get", "pods", "-n=production"])
    # a pattern's own '--opt=value' is split the same way, so both spellings meet
    assert matches("kubectl logs --tail=50", ["/usr/bin/kubectl", "logs", "--tail=50"])
    assert not matches("kubectl logs --tail=50", ["/usr/bin/kubectl", "logs", "--tail=5"])


def test_globs_use_fnmatchcase() -> None:
    assert matches("tail /var/log/postgresql/postgresql-*-main.log", ["/usr/bin/tail", "-n", "100", "/var/log/postgresql/postgresql-16-main.log"])
    assert matches("psql *pg_blocking_pids*", [*PSQL, SQL["blocking"]])
    assert matches("ls file?.[ab]", ["/bin/ls", "file1.a"])
    assert not matches("ls file?.[ab]", ["/bin/ls", "file1.c"])
    assert not matches("psql *PG_BLOCKING_PIDS*", [*PSQL, SQL["blocking"]])  # case matters


def test_alternatives_each_may_be_a_glob() -> None:
    pattern = "ss -ltnp|-tlnp|-lntp"
    for flags in ("-ltnp", "-tlnp", "-lntp"):
        assert matches(pattern, ["/usr/bin/ss", flags])
    assert not matches(pattern, ["/usr/bin/ss", "-ltn"])
    assert matches("cat /etc/nginx/*.conf|/etc/apache2/*.conf", ["/bin/cat", "/etc/apache2/ports.conf"])
    assert not matches("cat /etc/nginx/*.conf|/etc/apache2/*.conf", ["/bin/cat", "/etc/passwd"])


def test_quoted_pipe_is_a_literal() -> None:
    pattern = "psql -F '|' *max_connections*"
    assert CommandPattern(pattern).tokens == ("psql", "-F", "|", "*max_connections*")
    assert matches(pattern, [*PSQL, SQL["max_connections"]])
    no_pipe = ["/usr/bin/psql", "-X", "-A", "-F", ",", "-c", SQL["max_connections"]]
    assert not matches(pattern, no_pipe)
    # the literal is not "empty alternative or empty alternative"
    assert not matches("psql '|'", ["/usr/bin/psql", ""])


def test_pattern_token_with_spaces_matches_one_argv_element() -> None:
    assert matches('psql "SHOW max_connections"', [*PSQL, "SHOW max_connections"])
    assert not matches('psql "SHOW max_connections"', [*PSQL, "SHOW", "max_connections"])


def test_size_and_invalid_patterns() -> None:
    assert CommandPattern("kubectl get pods -n|--namespace production").size == 5
    assert CommandPattern('psql "SHOW max_connections"').size == 2
    for bad in ("", "   ", "psql 'unbalanced"):
        with pytest.raises(ValueError, match="command pattern") as info:
            CommandPattern(bad)
        assert repr(bad) in str(info.value)
    with pytest.raises(ValueError):
        Fixture(run='kubectl "oops')


def test_empty_argv_matches_nothing() -> None:
    assert not matches("*", [])


# --- the executor -----------------------------------------------------------


def _executor(*runs: str) -> FixtureExecutor:
    return FixtureExecutor([Fixture(run=run, stdout=f"from {run}\n") for run in runs])


def test_most_tokens_wins_regardless_of_order() -> None:
    general, specific = "kubectl get pods -n|--namespace production", "kubectl get pods -n|--namespace production -l|--selector app=postgres"
    argv = ["/usr/bin/kubectl", "get", "pods", "-n", "production", "-l", "app=postgres"]
    for order in ((general, specific), (specific, general)):
        result = _executor(*order).run(argv, timeout=5, max_output=10_000)
        assert result.stdout == f"from {specific}\n"
    plain = _executor(general, specific).run(argv[:5], timeout=5, max_output=10_000)
    assert plain.stdout == f"from {general}\n"


def test_tie_goes_to_the_first_written() -> None:
    argv = ["/usr/bin/journalctl", "-u", "ssh", "--no-pager", "-n", "200"]
    assert _executor("journalctl -u ssh", "journalctl -u ssh|sshd").run(argv, timeout=5, max_output=999).stdout == "from journalctl -u ssh\n"
    assert _executor("journalctl -u ssh|sshd", "journalctl -u ssh").run(argv, timeout=5, max_output=999).stdout == "from journalctl -u ssh|sshd\n"


def test_fixture_outputs_and_exit_code_are_returned() -> None:
    executor = FixtureExecutor([Fixture(run="nginx -t", stdout="", stderr="nginx: [emerg] bad\n", exit_code=1)])
    result = executor.run(["/usr/sbin/nginx", "-t"], timeout=5, max_output=10_000)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "nginx: [emerg] bad\n")
    assert not result.truncated and not result.timed_out
    assert result.output_sha256 == output_digest(b"", b"nginx: [emerg] bad\n")
    assert executor.calls == [["/usr/sbin/nginx", "-t"]] and executor.unmatched == []


def test_unmatched_command_gets_127_and_is_recorded() -> None:
    executor = _executor("kubectl get pods -n|--namespace production")
    argv = ["/usr/bin/kubectl", "delete", "pod", "x y", "-n", "production"]
    result = executor.run(argv, timeout=5, max_output=10_000)
    assert result.exit_code == 127
    assert result.stdout == ""
    assert result.stderr == "no recorded output for: /usr/bin/kubectl delete pod 'x y' -n production"
    assert result.stderr == f"no recorded output for: {shlex.join(argv)}"
    executor.run(["/usr/bin/kubectl", "get", "pods", "-n", "production"], timeout=5, max_output=10_000)
    assert executor.unmatched == [argv]
    assert executor.calls == [argv, ["/usr/bin/kubectl", "get", "pods", "-n", "production"]]


def test_unmatched_argv_with_quotes_does_not_break() -> None:
    argv = ["/usr/bin/psql", "-c", "SELECT 'it''s"]
    result = FixtureExecutor([]).run(argv, timeout=5, max_output=10_000)
    assert result.exit_code == 127 and result.stderr.endswith(shlex.join(argv))


def test_output_cap_applies_to_fixtures() -> None:
    executor = FixtureExecutor([Fixture(run="df -h", stdout="a" * 50, stderr="é" * 3)])
    result = executor.run(["/bin/df", "-h"], timeout=5, max_output=10)
    assert result.stdout == "a" * 10 + TRUNCATION_MARKER.format(limit=10)
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.stderr == "é" * 3  # 6 bytes, under the cap
    assert result.output_sha256 == output_digest(b"a" * 10, "é".encode() * 3)
    exact = executor.run(["/bin/df", "-h"], timeout=5, max_output=50)
    assert exact.stdout == "a" * 50 and not exact.truncated


def test_bad_argv_raises() -> None:
    for argv in ([], "df -h"):
        with pytest.raises(ValueError):
            FixtureExecutor([]).run(argv, timeout=5, max_output=10)  # type: ignore[arg-type]


# --- the public scenarios against the canonical argv forms ------------------


def _scenario_fixtures(name: str) -> list[Fixture]:
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    node = next(iter(data["nodes"].values()))
    return [Fixture(**fixture) for fixture in node["fixtures"]]


def _answer(scenario: str, argv: list[str]) -> str:
    """The `run` pattern of the fixture that answers argv in that scenario."""
    executor = FixtureExecutor(_scenario_fixtures(scenario))
    fixture = executor.find(argv)
    assert fixture is not None, f"{shlex.join(argv)} unmatched in {scenario}"
    return fixture.run


def test_every_public_scenario_fixture_parses() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert files
    for path in files:
        data = yaml.safe_load(path.read_text())
        for node in data["nodes"].values():
            FixtureExecutor([Fixture(**fixture) for fixture in node.get("fixtures", [])])


@pytest.mark.parametrize(
    ("scenario", "argv", "expected"),
    [
        ("database-too-many-connections", [*PSQL, SQL["max_connections"]], 'psql "SHOW max_connections"'),
        ("database-too-many-connections", [*PSQL, SQL["connections"]], "psql *count(*)*pg_stat_activity*"),
        ("database-too-many-connections", [*PSQL, SQL["long_queries"]], "psql *pg_stat_activity*runtime*"),
        ("database-lock-blocking", [*PSQL, SQL["blocking"]], "psql *pg_blocking_pids*"),
        ("database-lock-blocking", ["/usr/bin/pg_lsclusters"], "pg_lsclusters"),
        ("database-lock-blocking", ["/usr/bin/systemctl", "status", "postgresql", "--no-pager"], "systemctl status postgresql"),
        ("database-too-many-connections", ["/usr/bin/tail", "-n", "200", "/var/log/postgresql/postgresql-15-main.log"], "tail /var/log/postgresql/postgresql-*-main.log"),
        ("database-too-many-connections", ["/bin/df", "-h"], "df -h"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production"], "kubectl logs payment-service-7d9f8b-xyz -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production", "--previous", "--tail=100"], "kubectl logs payment-service-7d9f8b-xyz -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "get", "pods", "-n", "production", "-l", "app=postgres"], "kubectl get pods -n|--namespace production -l|--selector app=postgres"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "get", "pods", "-n", "production"], "kubectl get pods -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "get", "events", "-n", "production", "--sort-by=.lastTimestamp"], "kubectl get events -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "describe", "pod", "postgres-0", "-n", "production"], "kubectl describe pod postgres-0 -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "describe", "service", "postgres-db", "-n", "production"], "kubectl describe service|services|svc postgres-db -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "get", "services", "-n", "production"], "kubectl get services|service|svc -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "get", "endpoints", "postgres-db", "-n", "production"], "kubectl get endpoints|ep postgres-db -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "top", "pods", "-n", "production"], "kubectl top pods -n|--namespace production"),
        ("k8s-crashloop-db-pending", ["/usr/bin/kubectl", "top", "nodes"], "kubectl top nodes"),
        ("webserver-502-upstream-down", ["/usr/bin/ss", "-ltnp"], "ss -ltnp|-tlnp|-lntp"),
        ("security-unexpected-listener", ["/usr/bin/ss", "-ltnup"], "ss -ltnup|-tulnp|-lntup|-tlnup"),
        ("security-ssh-bruteforce", ["/usr/bin/journalctl", "-u", "sshd", "--no-pager", "-n", "200"], "journalctl -u ssh|sshd"),
    ],
)
def test_public_scenarios_answer_canonical_commands(scenario: str, argv: list[str], expected: str) -> None:
    assert _answer(scenario, argv) == expected


def test_describe_pod_picks_the_named_pod() -> None:
    fixtures = _scenario_fixtures("k8s-crashloop-db-pending")
    executor = FixtureExecutor(fixtures)
    result = executor.run(["/usr/bin/kubectl", "describe", "pod", "postgres-0", "-n", "production"], timeout=5, max_output=1_000_000)
    assert "Insufficient cpu" in result.stdout and result.exit_code == 0
    missing = executor.run(["/usr/bin/kubectl", "describe", "pod", "postgres-0", "-n", "staging"], timeout=5, max_output=1_000_000)
    assert missing.exit_code == 127
    assert executor.unmatched == [["/usr/bin/kubectl", "describe", "pod", "postgres-0", "-n", "staging"]]


def test_pattern_opt_equals_value_matches_both_spellings() -> None:
    pattern = CommandPattern("kubectl scale deployment/web --replicas=2")
    assert pattern.matches(["kubectl", "scale", "deployment/web", "--replicas", "2"])
    assert pattern.matches(["kubectl", "scale", "deployment/web", "--replicas=2"])
    assert not pattern.matches(["kubectl", "scale", "deployment/web", "--replicas=3"])
