"""The policy engine on hand-picked cases: each names the behaviour it proves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from permissions.engine import PolicyEngine
from permissions.models import GrantSpec, NodeContext, Verdict
from permissions.rules import RuleError
from tests.policy_helpers import LAB, default_engine

ALLOW, DENY, HOLD = Verdict.ALLOW, Verdict.DENY, Verdict.NEEDS_APPROVAL


def decide(agent: str, *argv: str, engine: PolicyEngine | None = None, node: NodeContext = LAB):
    return (engine or default_engine()).decide(agent=agent, node=node, argv=list(argv))


# The canonical commands of ../shared/scenarios/FORMAT.md, with the agent that owns them.
CANONICAL = [
    ("k8s/pod-diagnostics", ["kubectl", "get", "pods", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "pods", "-n", "production", "-l", "app=postgres"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "pods", "-A"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "describe", "pod", "postgres-0", "-n", "production"], ALLOW),
    ("k8s/log-analysis", ["kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production"], ALLOW),
    ("k8s/log-analysis", ["kubectl", "logs", "web-1", "-n", "prod", "--previous", "--tail=50", "-c", "app"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "services", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "describe", "service", "postgres-db", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "endpoints", "postgres-db", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "events", "-n", "production", "--sort-by=.lastTimestamp"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "pvc", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "describe", "pvc", "data-postgres-0", "-n", "production"], ALLOW),
    ("k8s/deployment-manager", ["kubectl", "get", "deployments", "-n", "staging"], ALLOW),
    ("k8s/deployment-manager", ["kubectl", "describe", "deployment", "web", "-n", "staging"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "top", "pods", "-n", "production"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "top", "nodes"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "get", "nodes"], ALLOW),
    ("k8s/pod-diagnostics", ["kubectl", "describe", "nodes"], ALLOW),
    ("k8s/deployment-manager", ["kubectl", "rollout", "restart", "deployment/web", "-n", "prod"], HOLD),
    ("k8s/deployment-manager", ["kubectl", "delete", "pod", "web-1", "-n", "prod"], HOLD),
    ("k8s/deployment-manager", ["kubectl", "scale", "deployment/web", "--replicas=2", "-n", "prod"], HOLD),
    ("webserver/service-health", ["systemctl", "status", "nginx", "--no-pager"], ALLOW),
    ("webserver/service-health", ["systemctl", "status", "apache2", "--no-pager"], ALLOW),
    ("webserver/log-analysis", ["journalctl", "-u", "nginx", "--no-pager", "-n", "200"], ALLOW),
    ("webserver/log-analysis", ["tail", "-n", "100", "/var/log/nginx/error.log"], ALLOW),
    ("webserver/log-analysis", ["tail", "-n", "100", "/var/log/apache2/error.log"], ALLOW),
    ("webserver/config-check", ["nginx", "-t"], ALLOW),
    ("webserver/config-check", ["apache2ctl", "configtest"], ALLOW),
    ("webserver/config-check", ["nginx", "-T"], ALLOW),
    ("webserver/service-health", ["ss", "-ltnp"], ALLOW),
    ("webserver/service-health", ["ss", "-tlnp"], ALLOW),
    ("webserver/service-health", ["df", "-h"], ALLOW),
    ("webserver/service-health", ["du", "-sh", "/var/log/nginx"], ALLOW),
    ("webserver/config-check", ["openssl", "x509", "-noout", "-subject", "-enddate", "-in", "/etc/ssl/certs/shop.pem"], ALLOW),
    ("webserver/service-health", ["systemctl", "restart", "nginx"], HOLD),
    ("webserver/service-health", ["systemctl", "reload", "apache2"], HOLD),
    ("database/connection-debugging", ["pg_lsclusters"], ALLOW),
    ("database/connection-debugging", ["systemctl", "status", "postgresql", "--no-pager"], ALLOW),
    ("database/connection-debugging", ["tail", "-n", "200", "/var/log/postgresql/postgresql-16-main.log"], ALLOW),
    ("database/connection-debugging", ["pg_isready"], ALLOW),
    ("database/health", ["df", "-h"], ALLOW),
    ("database/connection-debugging", ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", "SHOW max_connections"], ALLOW),
    ("database/query-analysis", ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", "SELECT pg_terminate_backend(48211)"], HOLD),
    ("database/query-analysis", ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", "SELECT pg_cancel_backend(48211)"], HOLD),
    ("security/access-audit", ["journalctl", "-u", "ssh", "--no-pager", "-n", "500"], ALLOW),
    ("security/access-audit", ["journalctl", "-u", "sshd", "--no-pager", "-n", "500"], ALLOW),
    ("security/access-audit", ["tail", "-n", "500", "/var/log/auth.log"], ALLOW),
    ("security/exposure-scan", ["ss", "-ltnup"], ALLOW),
    ("security/exposure-scan", ["find", "/", "-xdev", "-perm", "-4000", "-type", "f"], ALLOW),
    ("security/access-audit", ["getent", "passwd"], ALLOW),
    ("security/access-audit", ["last", "-n", "50"], ALLOW),
    ("security/compliance-check", ["sshd", "-T"], ALLOW),
    ("security/compliance-check", ["openssl", "x509", "-noout", "-subject", "-enddate", "-in", "/etc/ssl/certs/a.pem"], ALLOW),
]


@pytest.mark.parametrize(("agent", "argv", "expected"), CANONICAL, ids=[" ".join(c[1])[:60] for c in CANONICAL])
def test_canonical_commands_get_their_shipped_decision(agent: str, argv: list[str], expected: Verdict) -> None:
    decision = decide(agent, *argv)
    assert decision.verdict is expected, decision.reason
    if expected is not DENY:
        assert decision.program_path and decision.program_path.startswith("/")
        assert decision.exec_argv()[1:] == argv[1:]


def test_sql_statements_of_format_are_whitelisted() -> None:
    from permissions import sql

    for name in ("connections", "long_queries", "blocking", "replication", "database_sizes"):
        text = sql.statements()[name].text
        agent = {"connections": "database/connection-debugging", "replication": "database/health",
                 "database_sizes": "database/health"}.get(name, "database/query-analysis")
        assert decide(agent, "psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", text).allowed


def test_equivalent_spellings_match_the_same_rule() -> None:
    for argv in (["kubectl", "get", "pods", "--namespace=prod"], ["kubectl", "-nprod", "get", "pods"],
                 ["kubectl", "get", "pods", "-n=prod"], ["kubectl", "--namespace", "prod", "get", "pods"]):
        assert decide("k8s/pod-diagnostics", *argv).allowed, argv


def test_pflag_equals_short_value_is_read_as_kubectl_reads_it() -> None:
    # kubectl reads '-n=kube-system' as namespace 'kube-system': a deny on that
    # namespace must catch it.
    engine = PolicyEngine(defaults=[GrantSpec(name="g", agents=["a/b"], allow=["kubectl get pods -n {k8s_name}"],
                                              deny=["kubectl get pods -n kube-system ..."])])
    assert decide("a/b", "kubectl", "get", "pods", "-n=kube-system", engine=engine).verdict is DENY
    assert decide("a/b", "kubectl", "get", "pods", "-nkube-system", engine=engine).verdict is DENY


@pytest.mark.parametrize("argv,needle", [
    (["journalctl", "--vacuum-t=1s"], "--vacuum-time"),
    (["journalctl", "--vacuum-s", "1M"], "--vacuum-size"),
    (["tail", "--fol", "/var/log/nginx/error.log"], "--follow"),
    (["ss", "-nK"], "--kill"),
    (["ss", "-ltnpK"], "--kill"),
    (["tail", "-fn", "5", "/var/log/nginx/error.log"], "--follow"),
    (["psql", "-X", "--fil=/tmp/x.sql"], "--file"),
])
def test_abbreviations_and_bundles_are_normalised_before_matching(argv: list[str], needle: str) -> None:
    decision = decide("webserver/log-analysis", *argv)
    assert decision.verdict is DENY
    assert needle in decision.reason or needle in (decision.rule or "")


def test_kubeconfig_reason_is_in_words() -> None:
    d = decide("k8s/pod-diagnostics", "kubectl", "get", "pods", "-n", "prod", "--kubeconfig", "/tmp/k")
    assert d.verdict is DENY
    assert "--kubeconfig is never allowed for kubectl" in d.reason and "credential plugins" in d.reason


def test_unknown_kubectl_subcommand_is_refused_as_plugin() -> None:
    d = decide("k8s/pod-diagnostics", "kubectl", "krew", "install", "x")
    assert d.verdict is DENY and "plugin" in d.reason


def test_deny_rule_beats_allow_rule_in_any_grant() -> None:
    allow = GrantSpec(name="wide", agents=["x/*"], allow=["kubectl get {k8s_name} -n {k8s_name}"])
    deny = GrantSpec(name="no-configmaps", agents=["*"], deny=["kubectl get configmap* ..."])
    engine = PolicyEngine(defaults=[allow], grants=[deny])
    assert decide("x/y", "kubectl", "get", "pods", "-n", "a", engine=engine).allowed
    d = decide("x/y", "kubectl", "get", "configmaps", "-n", "a", engine=engine)
    assert d.verdict is DENY and d.grant == "no-configmaps"


@pytest.mark.parametrize("resource", ["secrets", "Secrets", "pods,secrets", "SECRET/db", "secrets.v1", "secret"])
def test_secrets_are_refused_whatever_a_grant_allows(resource: str) -> None:
    wide = PolicyEngine(grants=[GrantSpec(name="wide", agents=["k8s/*"], allow=["kubectl get * -n {k8s_name} ...",
                                                                             "kubectl describe * ..."])])
    for verb in ("get", "describe"):
        d = decide("k8s/a", "kubectl", verb, resource, "-n", "prod", "-o", "yaml", engine=wide)
        assert d.verdict is DENY and "secrets are never read" in d.reason, (verb, resource)


def test_kubectl_options_before_the_command_are_limited_to_root_flags() -> None:
    assert decide("k8s/pod-diagnostics", "kubectl", "-n", "prod", "get", "pods").allowed
    d = decide("k8s/pod-diagnostics", "kubectl", "-A", "get", "pods")
    assert d.verdict is DENY and "must come after" in d.reason


@pytest.mark.parametrize("argv", [["nginx", "-t", "--"], ["apache2ctl", "--", "configtest"],
                                  ["find", "/", "-xdev", "-perm", "-4000", "-type", "f", "--"]])
def test_double_dash_is_refused_where_the_program_has_no_such_marker(argv: list[str]) -> None:
    assert decide("webserver/config-check", *argv).verdict is DENY


def test_sql_whitelist_collapses_only_ascii_spaces_outside_literals() -> None:
    base = ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c"]
    assert decide("database/connection-debugging", *base, "SHOW  max_connections ;").allowed
    assert decide("database/connection-debugging", *base, "SHOW\u1680max_connections").verdict is DENY
    from permissions import sql

    text = sql.statements()["connections"].text.replace("'client backend'", "'client  backend'")
    assert decide("database/connection-debugging", *base, text).verdict is DENY


def test_default_deny_names_agent_node_and_closest_rules() -> None:
    d = decide("k8s/log-analysis", "kubectl", "logs", "a", "b", "-n", "prod")
    assert d.verdict is DENY and d.rule == "default:deny"
    assert "k8s/log-analysis" in d.reason and "lab" in d.reason and "kubectl logs" in d.reason


def test_namespace_constraint_limits_n_and_forbids_all_namespaces() -> None:
    grant = GrantSpec(name="staging-only", agents=["k8s/*"], allow=["kubectl get pods ..."],
                      constraints={"namespaces": ["staging"]})
    engine = PolicyEngine(grants=[grant])
    assert decide("k8s/a", "kubectl", "get", "pods", "-n", "staging", engine=engine).allowed
    for argv in (["-n", "prod"], ["-A"], [], ["-n", "staging", "--all-namespaces"]):
        d = decide("k8s/a", "kubectl", "get", "pods", *argv, engine=engine)
        assert d.verdict is DENY, argv
        # -n with -A is refused before any grant: kubectl would ignore the -n.
        assert "staging" in d.reason or "--all-namespaces and --namespace" in d.reason, d.reason


def test_path_prefix_constraint_after_dotdot_and_symlinks(tmp_path: Path) -> None:
    allowed = tmp_path / "logs"
    allowed.mkdir()
    (allowed / "app.log").write_text("x")
    secret = tmp_path / "secret"
    secret.write_text("s")
    (allowed / "link.log").symlink_to(secret)
    grant = GrantSpec(name="logs", agents=["a/b"], allow=["tail -n {int:1..100} ..."],
                      constraints={"path_prefixes": [str(allowed)]})
    control = PolicyEngine(grants=[grant])
    node_side = PolicyEngine(grants=[grant], resolve_path=os.path.realpath)
    ok = ["tail", "-n", "5", str(allowed / "app.log")]
    assert control.decide(agent="a/b", node=LAB, argv=ok).allowed
    assert node_side.decide(agent="a/b", node=LAB, argv=ok).allowed
    dotdot = ["tail", "-n", "5", f"{allowed}/../secret"]
    assert control.decide(agent="a/b", node=LAB, argv=dotdot).verdict is DENY
    link = ["tail", "-n", "5", str(allowed / "link.log")]
    assert control.decide(agent="a/b", node=LAB, argv=link).allowed  # the control plane cannot see the node's disk
    d = node_side.decide(agent="a/b", node=LAB, argv=link)
    assert d.verdict is DENY and str(secret) in d.reason


def test_node_selectors_and_replace_defaults() -> None:
    default = GrantSpec(name="d", agents=["a/b"], allow=["df -h"])
    # -i (inodes) is a different report; -T would only change the format, which rules ignore.
    prod_only = GrantSpec(name="p", agents=["a/b"], nodes={"labels": {"env": "production"}}, allow=["df -h -i"],
                          replace_defaults=True)
    engine = PolicyEngine(defaults=[default], grants=[prod_only])
    staging = NodeContext.of("s1", {"env": "staging"})
    assert decide("a/b", "df", "-h", engine=engine, node=staging).allowed
    assert decide("a/b", "df", "-h", "-i", engine=engine, node=staging).verdict is DENY
    assert decide("a/b", "df", "-h", "-i", engine=engine, node=LAB).allowed
    assert decide("a/b", "df", "-h", engine=engine, node=LAB).verdict is DENY  # defaults replaced there


def test_programs_resolve_from_the_node_map_only() -> None:
    node = NodeContext.of("n", programs={"kubectl": "/opt/k8s/bin/kubectl"})
    d = decide("k8s/pod-diagnostics", "kubectl", "top", "nodes", node=node)
    assert d.allowed and d.exec_argv()[0] == "/opt/k8s/bin/kubectl"
    assert decide("k8s/pod-diagnostics", "/opt/k8s/bin/kubectl", "top", "nodes", node=node).allowed
    for argv0 in ("/usr/bin/kubectl", "./kubectl", "/tmp/kubectl", "bin/kubectl", "/opt/k8s/bin/../bin/kubectl"):
        assert decide("k8s/pod-diagnostics", argv0, "top", "nodes", node=node).verdict is DENY, argv0


@pytest.mark.parametrize("bad", ["prod\n", "pr\x00od", "\x1b[31mprod", "pro\u202ed", "pr\u200bod", "ｐｒｏｄ", "prod\u00a0"])
def test_hygiene_refuses_invisible_and_lookalike_characters(bad: str) -> None:
    d = decide("k8s/pod-diagnostics", "kubectl", "get", "pods", "-n", bad)
    assert d.verdict is DENY and d.rule and d.rule.startswith("hygiene")


def test_non_list_argv_is_refused_clearly() -> None:
    engine = default_engine()
    assert engine.decide(agent="k8s/pod-diagnostics", node=LAB, argv="kubectl get pods").verdict is DENY  # type: ignore[arg-type]
    d = engine.decide(agent="k8s/pod-diagnostics", node=LAB, argv=["kubectl", 3])  # type: ignore[list-item]
    assert d.verdict is DENY and "argument 1" in d.reason


@pytest.mark.parametrize("sql_text,needle", [
    ("\\! id", "backslash"),
    ("\\copy t to program 'id'", "backslash"),
    ("COPY t TO PROGRAM 'id'", "PROGRAM"),
    ("SHOW max_connections; DROP TABLE accounts", "';'"),
    ("SELECT pg_read_file('/etc/passwd')", "whitelisted"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "whitelisted"),
])
def test_psql_runs_only_whitelisted_sql(sql_text: str, needle: str) -> None:
    d = decide("database/query-analysis", "psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", sql_text)
    assert d.verdict is DENY and needle in d.reason


def test_psql_requires_no_psqlrc() -> None:
    d = decide("database/connection-debugging", "psql", "-A", "-F", "|", "-P", "footer=off", "-c", "SHOW max_connections")
    assert d.verdict is DENY and "--no-psqlrc" in d.reason


def test_bad_rules_are_refused_at_load_with_the_rule_named() -> None:
    for rule in ("kubectl get pods -n {nosuchtype}", "kubectl exec x", "notaprogram x", "kubectl get [--watch"):
        with pytest.raises((RuleError, ValueError)) as info:
            PolicyEngine(grants=[GrantSpec(name="g", agents=["a/b"], allow=[rule])])
        assert rule.split()[0] in str(info.value) or "rule" in str(info.value)


def test_commands_sharing_a_spec_stay_distinct() -> None:
    # restart is approvable; stop shares its flag spec but no rule grants it.
    assert decide("webserver/service-health", "systemctl", "restart", "nginx").verdict is HOLD
    d = decide("webserver/service-health", "systemctl", "stop", "nginx")
    assert d.verdict is DENY and d.rule == "default:deny"


@pytest.mark.parametrize("path", ["/var/log/nginx/error.log; id", "/var/log/$(reboot)", "/var/log/nginx/*.log",
                                  "/var/log/nginx/a b.log", "/var/log/nginx/error.log\t"])
def test_path_arguments_refuse_shell_punctuation_and_globs(path: str) -> None:
    assert decide("webserver/log-analysis", "tail", "-n", "5", path).verdict is DENY


@pytest.mark.parametrize("path", ["/etc/ssl/private/site.pem", "/etc/letsencrypt/live/a/privkey.pem",
                                  "/etc/ssh/ssh_host_ed25519_key", "/etc/ssl/certs/site.key"])
def test_certificate_tool_never_opens_keys(path: str) -> None:
    argv = ["openssl", "x509", "-noout", "-subject", "-enddate", "-in", path]
    assert decide("security/compliance-check", *argv).verdict is DENY
    assert decide("webserver/config-check", *argv).verdict is DENY
