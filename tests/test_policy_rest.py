"""'...' after a restricted placeholder (issue 10 §3) and spellings programs read the same way (§7)."""

from __future__ import annotations

import pytest

from permissions.engine import PolicyEngine
from permissions.models import GrantSpec, Verdict
from permissions.normalise import NotNormalisable, find_perm, unit_name
from permissions.programs import load_programs
from permissions.rules import RuleError, compile_rule
from tests.policy_helpers import LAB, default_engine

ISSUE_RULES = [
    "tail -n {int:1..500} {path:/var/log/app} ...",
    "journalctl -u {enum:nginx,apache2} --no-pager ...",
    "systemctl show {enum:nginx} -p {enum:ActiveState,SubState} ...",
]


def site(*allow: str, deny: tuple[str, ...] = ()) -> PolicyEngine:
    return PolicyEngine(grants=[GrantSpec(name="site", agents=["a/b"], allow=list(allow), deny=list(deny))])


def verdict(engine: PolicyEngine, *argv: str) -> Verdict:
    return engine.decide(agent="a/b", node=LAB, argv=list(argv)).verdict


@pytest.mark.parametrize("argv", [
    # the issue's three examples
    ["tail", "-n", "5", "/var/log/app/app.log", "/etc/shadow"],
    ["journalctl", "-u", "sshd", "-u", "squads-agent", "--no-pager"],
    ["journalctl", "-u", "nginx", "-u", "squads-agent", "--no-pager"],
    ["systemctl", "show", "nginx", "-p", "ActiveState", "-p", "Environment"],
    # the same class: later positionals, repeats, --opt=value, bundles, abbreviations, interleaving
    ["tail", "-n", "5", "/var/log/app/a.log", "/var/log/app/b.log", "/etc/passwd"],
    ["tail", "-n", "5", "/etc/shadow", "/var/log/app/app.log"],
    ["tail", "-n5", "/var/log/app/a.log", "/root/.ssh/id_rsa"],
    ["journalctl", "--unit=nginx", "--unit=sshd", "--no-pager"],
    ["journalctl", "-u", "nginx", "--no-pager", "--uni", "sshd"],
    ["journalctl", "-unginx", "-usshd", "--no-pager"],
    ["journalctl", "-u", "apache2", "-u", "nginx", "-u", "sshd.service", "--no-pager"],
    ["systemctl", "show", "nginx", "-p", "ActiveState", "--property=Environment"],
    ["systemctl", "show", "nginx", "-p", "ActiveState", "--prop=Environment"],
    ["systemctl", "show", "nginx", "-pActiveState", "-pEnvironment"],
    ["systemctl", "show", "nginx", "-p", "ActiveState,Environment"],
    ["systemctl", "show", "nginx", "-p", "ActiveState", "sshd"],
    ["systemctl", "show", "nginx", "sshd.service", "-p", "SubState"],
])
def test_a_placeholder_restricts_every_later_argument_of_its_kind(argv: list[str]) -> None:
    assert verdict(site(*ISSUE_RULES), *argv) is Verdict.DENY


@pytest.mark.parametrize("argv", [
    ["tail", "-n", "5", "/var/log/app/app.log"],
    ["tail", "-n", "5", "/var/log/app/app.log", "/var/log/app/worker.log"],
    ["journalctl", "-u", "nginx", "-u", "apache2", "--no-pager", "--since", "1 hour ago"],
    ["journalctl", "-u", "nginx.service", "-n", "50"],
    ["systemctl", "show", "nginx", "-p", "ActiveState", "-p", "SubState", "--value"],
    ["systemctl", "show", "nginx.service", "--property=SubState"],
])
def test_what_the_restriction_allows_still_runs(argv: list[str]) -> None:
    assert verdict(site(*ISSUE_RULES), *argv) is Verdict.ALLOW


def test_an_optional_group_restricts_repeats_too() -> None:
    engine = site("journalctl [-u {enum:nginx}] -k ...")
    assert verdict(engine, "journalctl", "-k", "-n", "20") is Verdict.ALLOW
    assert verdict(engine, "journalctl", "-k", "-u", "nginx") is Verdict.ALLOW
    assert verdict(engine, "journalctl", "-k", "-u", "nginx", "-u", "sshd") is Verdict.DENY


def test_literals_restrict_later_arguments_except_after_a_kubectl_resource_type() -> None:
    engine = site("systemctl status nginx ...", "kubectl get pods -n {k8s_name} ...")
    assert verdict(engine, "systemctl", "status", "nginx", "--no-pager") is Verdict.ALLOW
    assert verdict(engine, "systemctl", "status", "nginx", "sshd") is Verdict.DENY
    # after the type come the names of that type, another kind of argument
    assert verdict(engine, "kubectl", "get", "pods", "web-0", "web-1", "-n", "prod") is Verdict.ALLOW


def test_deny_rules_keep_dots_wide() -> None:
    engine = site("journalctl ...", deny=("journalctl -u {enum:sshd} ...",))
    assert verdict(engine, "journalctl", "-u", "sshd", "-u", "nginx") is Verdict.DENY
    assert verdict(engine, "journalctl", "-u", "nginx", "-u", "sshd") is Verdict.DENY
    assert verdict(engine, "journalctl", "-u", "nginx") is Verdict.ALLOW


def test_compiled_rules_carry_their_restrictions() -> None:
    rule = compile_rule(ISSUE_RULES[1], load_programs())
    assert rule.rest and dict(rule.limits)["--unit"]
    assert compile_rule(ISSUE_RULES[1], load_programs(), deny=True).limits == ()


def test_rules_with_ambiguous_literals_are_refused_when_compiled() -> None:
    with pytest.raises(RuleError, match=r"'\+MODE' is read differently"):
        compile_rule("find {path:/} -perm +4000 ...", load_programs())


@pytest.mark.parametrize(("value", "expected"), [
    ("nginx", "nginx"), ("nginx.service", "nginx"), ("postgresql@16-main.service", "postgresql@16-main"),
    ("nginx.socket", "nginx.socket"), ("nginx.service.service", "nginx.service"), (".service", ".service"),
])
def test_unit_names_as_systemd_resolves_them(value: str, expected: str) -> None:
    assert unit_name(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("-4000", "-4000"), ("-04000", "-4000"), ("-u=s", "-4000"), ("-u+s", "-4000"), ("/u=s", "-4000"),
    ("/4000", "-4000"), ("4000", "4000"), ("u=s", "4000"), ("-g+s", "-2000"), ("-+s", "-6000"),
    ("/u+s,g+s", "/6000"), ("/6000", "/6000"), ("-o+w", "-0002"), ("-o=w,g-w", "-0002"), ("-o+t", "-1000"),
    ("-u+t", "-0000"), ("-a+x", "-0111"),
])
def test_find_perm_as_gnu_find_reads_it(value: str, expected: str) -> None:
    assert find_perm(value) == expected


@pytest.mark.parametrize("value", ["+4000", "+u=s", "/0", "/u-s", "-u=X", "-g=u", "-s", "u", "-u=sz"])
def test_find_perm_refuses_what_is_ambiguous(value: str) -> None:
    with pytest.raises(NotNormalisable):
        find_perm(value)


@pytest.mark.parametrize(("agent", "argv", "expected"), [
    ("webserver/service-health", ["systemctl", "status", "nginx"], Verdict.ALLOW),
    ("webserver/service-health", ["systemctl", "status", "nginx.service", "--no-pager"], Verdict.ALLOW),
    ("webserver/service-health", ["systemctl", "restart", "nginx.service"], Verdict.NEEDS_APPROVAL),
    ("database/connection-debugging", ["systemctl", "status", "postgresql@16-main", "--no-pager"], Verdict.ALLOW),
    ("webserver/log-analysis", ["journalctl", "-u", "nginx.service", "--no-pager", "-n", "100"], Verdict.ALLOW),
    ("webserver/log-analysis", ["journalctl", "-u", "nginx", "-n", "100", "--since", "1 hour ago"], Verdict.ALLOW),
    ("webserver/service-health", ["df", "-h", "/var/log"], Verdict.ALLOW),
    ("database/connection-debugging", ["pg_isready", "-h", "/var/run/postgresql"], Verdict.ALLOW),
    ("security/exposure-scan", ["find", "/", "-xdev", "-perm", "-u=s", "-type", "f"], Verdict.ALLOW),
    ("security/exposure-scan", ["find", "/", "-xdev", "-perm", "/u+s", "-type", "f"], Verdict.ALLOW),
    ("security/access-audit", ["getent", "passwd", "root"], Verdict.ALLOW),
    # and what the widened grants still refuse
    ("security/exposure-scan", ["find", "/", "-xdev", "-perm", "+4000", "-type", "f"], Verdict.DENY),
    ("database/connection-debugging", ["pg_isready", "-h", "10.0.0.9", "-p", "22"], Verdict.DENY),
    ("webserver/service-health", ["systemctl", "status", "nginx", "sshd"], Verdict.DENY),
    ("webserver/service-health", ["systemctl", "restart", "sshd.service"], Verdict.DENY),
    ("webserver/log-analysis", ["journalctl", "-u", "nginx", "-u", "sshd", "-n", "100"], Verdict.DENY),
    ("security/access-audit", ["getent", "shadow", "root"], Verdict.DENY),
])
def test_the_issues_refused_commands_get_their_decision(agent: str, argv: list[str], expected: Verdict) -> None:
    decision = default_engine().decide(agent=agent, node=LAB, argv=argv)
    assert decision.verdict is expected, decision.reason
