"""Property tests: parameters stay one argument, allows are justified, deny wins."""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permissions.argv import parse
from permissions.engine import PolicyEngine
from permissions.models import GrantSpec, Verdict
from permissions.rules import compile_rule
from tests.policy_helpers import LAB, default_engine, squads
from tools.models import Condition, SqlToken
from tools.service import ToolCallError, render

TOOLS = [(squad, tool) for squad in squads().values() for tool in squad.tools]
NASTY = st.sampled_from(["-", "--", "-f", "--kubeconfig=/x", ";", "|", "&&", "$(id)", "`id`", "\n", "\x00", "..",
                         "/etc/shadow", "a b", "*", "{k8s_name}", "\u202e", "ｐ", "../..", "-n", "kube-system"])
VALUES = st.one_of(st.text(max_size=40), NASTY, st.integers(-5, 100000).map(str),
                   st.builds(lambda a, b: a + b, NASTY, st.text(max_size=8)))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOOLS), st.data())
def test_a_parameter_value_is_rejected_or_becomes_exactly_one_argument(pair, data) -> None:  # type: ignore[no-untyped-def]
    squad, tool = pair
    values = {}
    for name, param in tool.params.items():
        values[name] = data.draw(st.booleans()) if param.is_flag else data.draw(VALUES)
    try:
        argv = render(tool, values)
    except ToolCallError as exc:
        assert tool.name in str(exc)
        return
    literal_count = 0
    for token in tool.argv:
        if isinstance(token, str):
            literal_count += 1
        elif isinstance(token, list):
            literal_count += len(token) if all(values.get(p.strip("{}")) is not None for p in token if p.startswith("{")) else 0
        elif isinstance(token, Condition):
            literal_count += len(token.argv) if values.get(token.if_) is True else 0
        elif isinstance(token, SqlToken):
            literal_count += 1
    assert len(argv) == literal_count  # no value ever split into or merged across arguments
    for name, value in values.items():
        if isinstance(value, str) and not tool.params[name].is_flag:
            whole = [a for a in argv if a == value]
            embedded = [a for a in argv if value in a and a != value]
            assert whole or embedded or value == ""
    # What a tool renders is what its own agent's shipped grant decides by the tool's effect.
    decision = default_engine().decide(agent=squad.agent_id(tool.agent), node=LAB, argv=argv)
    assert decision.verdict.value == tool.effect.value, decision.reason


ARG = st.one_of(
    st.sampled_from(["get", "pods", "logs", "describe", "pod", "-n", "prod", "-A", "-l", "app=web", "--previous",
                     "--tail", "50", "-o", "wide", "--kubeconfig", "/x", "secrets", "-w", "exec", "top", "nodes",
                     "--namespace=prod", "-nprod", "-p", "x", "--", "-c", "app", "--all-containers"]),
    st.text(max_size=6),
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["k8s/pod-diagnostics", "k8s/log-analysis", "k8s/deployment-manager"]), st.lists(ARG, max_size=8))
def test_every_allowed_argv_matches_a_rule_that_permits_it(agent: str, args: list[str]) -> None:
    engine = default_engine()
    argv = ["kubectl", *args]
    decision = engine.decide(agent=agent, node=LAB, argv=argv)
    if decision.verdict is Verdict.DENY:
        return
    for element in argv:
        assert unicodedata.normalize("NFKC", element) == element
        assert all(unicodedata.category(ch)[0] != "C" for ch in element)
    parsed = parse(engine.programs["kubectl"], argv[1:])
    rules = engine.rules_for(agent, LAB)
    bucket = rules.allow if decision.verdict is Verdict.ALLOW else rules.approve
    candidates = [r for r, _ in bucket.get(("kubectl", parsed.subcommands), ()) if r.text == decision.rule]
    assert candidates and candidates[0].matches(parsed)
    assert not any(r.matches(parsed) for r, _ in rules.deny.get(("kubectl", parsed.subcommands), ()))


RULES = st.sampled_from([
    "kubectl get pods -n {k8s_name}", "kubectl get pods ...", "kubectl get {k8s_name} -n {k8s_name} ...",
    "df -h", "df ...", "tail -n {int:1..100} {path:/var/log}", "tail ...", "systemctl status {unit} ...",
])
COMMANDS = st.sampled_from([
    ["kubectl", "get", "pods", "-n", "prod"], ["kubectl", "get", "pods", "-n", "kube-system", "-o", "wide"],
    ["df", "-h"], ["df", "-h", "/var"], ["tail", "-n", "5", "/var/log/syslog"], ["systemctl", "status", "nginx"],
])


@settings(max_examples=300)
@given(st.lists(RULES, min_size=1, max_size=4), st.lists(RULES, min_size=1, max_size=3), COMMANDS)
def test_deny_always_beats_allow(allow: list[str], deny: list[str], argv: list[str]) -> None:
    engine = PolicyEngine(defaults=[GrantSpec(name="a", agents=["s/a"], allow=allow, approve=allow)],
                          grants=[GrantSpec(name="d", agents=["s/*"], deny=deny)])
    decision = engine.decide(agent="s/a", node=LAB, argv=argv)
    parsed = parse(engine.programs[argv[0]], argv[1:])
    denied = any(compile_rule(r, engine.programs).matches(parsed) for r in deny)
    if denied:
        assert decision.verdict is Verdict.DENY and decision.grant == "d"
    elif any(compile_rule(r, engine.programs).matches(parsed) for r in allow):
        assert decision.verdict is Verdict.ALLOW
    else:
        assert decision.verdict is Verdict.DENY and decision.rule == "default:deny"
