"""The brain's engine rules of issue 12: triage first, verdicts, step fallback, no data is not
clean, findings that stand, follow-ups, actions in order, and no unfilled placeholder ever.

A small playbook of its own (a webserver-like squad with realistic outputs) keeps each rule
visible; the shipped bundles are used where the rule is about them (placeholders, slots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from prompts.service import render
from squads.brain.actions import Call, CallResult, Say
from squads.brain.analyzers import Output
from squads.brain.extract import extract
from squads.brain.models import Action, Analysis, Facts, Playbook, Registered, Runbook, Severity
from squads.brain.service import RunbookBrain, State
from squads.brain.steps import PLACEHOLDER, complete_text
from squads.brain.wording import is_check_request, is_small_talk, unsupported_change
from squads.service import load_squads

REPO = Path(__file__).resolve().parents[1]


def _status(output: Output, facts: Facts) -> Analysis:
    if "System has not been booted with systemd" in output.stderr:
        return Analysis("systemd is not running here", facts={"unavailable": True})
    if "Active: failed" in output.stdout:
        out = Analysis("nginx.service: failed")
        out.add("server_failed", Severity.CAUSE, "nginx has failed (Active: failed).")
        return out
    return Analysis("nginx.service: active (running)")


def _listeners(output: Output, facts: Facts) -> Analysis:
    ports = [line.split()[3] for line in output.stdout.splitlines()[1:] if line.strip()]
    out = Analysis(f"{len(ports)} listening socket(s)")
    if not any(p.endswith(":80") for p in ports):
        out.add("nothing_on_80", Severity.PROBLEM, "Nothing listens on port 80.")
    return out


def _log(output: Output, facts: Facts) -> Analysis:
    if not output.stdout.strip() or "No journal files were found" in output.stdout + output.stderr:
        out = Analysis("no log lines")
        out.add("no_data", Severity.INFO, "the log had no lines to read", check="error log")
        return out
    out = Analysis(f"{len(output.stdout.splitlines())} log lines")
    if "No space left on device" in output.stdout:
        out.add("disk_full", Severity.CAUSE, "The log says: No space left on device.", file="/var/log/nginx/error.log")
    return out


def _disk(output: Output, facts: Facts) -> Analysis:
    full = "100%" in output.stdout
    out = Analysis("/ is 100% full" if full else "/ is 41% full")
    if full:
        out.add("disk_full", Severity.CAUSE, "/ is 100% full.")
    return out


def _cert(output: Output, facts: Facts) -> Analysis:
    return Analysis("notAfter=Mar  1 00:00:00 2027 GMT")


ANALYZERS = {
    "t.status": (_status, {"unavailable"}, {"server_failed"}),
    "t.listeners": (_listeners, set(), {"nothing_on_80"}),
    "t.log": (_log, set(), {"no_data", "disk_full"}),
    "t.disk": (_disk, set(), {"disk_full"}),
    "t.cert": (_cert, set(), set()),
}
ARGV = {
    "service_status": ["systemctl", "status", "nginx", "--no-pager"],
    "listening_sockets": ["ss", "-ltnp"],
    "error_log": ["tail", "-n", "200", "/var/log/nginx/error.log"],
    "disk_usage": ["df", "-h"],
    "certificate": ["openssl", "x509", "-noout", "-enddate", "-in", "/etc/ssl/site.pem"],
    "restart": ["systemctl", "restart", "{server}"],
    "stop": ["systemctl", "stop", "{server}"],
}


def playbook(*, with_triage: bool = True) -> Playbook:
    runbooks = [
        Runbook.model_validate({"name": "disk-full", "title": "Disk space", "triggers": ["disk*", "no space"],
                                "steps": [{"tool": "disk_usage"}], "advice": {"disk_full": "Free space on {file}."}}),
        Runbook.model_validate({"name": "certificate", "title": "Certificate", "triggers": ["cert|certs|certificate*"],
                                "steps": [{"tool": "certificate"}]}),
        Runbook.model_validate({
            "name": "server-down", "title": "Web server down", "triggers": ["connection refused", "down"],
            "steps": [{"tool": "service_status",
                       "fallback": [{"tool": "listening_sockets"}, {"tool": "error_log"}]}],
            "advice": {"nothing_on_80": "Fix {file} at line {line}, then start nginx."},
        }),
    ]
    if with_triage:
        runbooks.append(Runbook.model_validate({
            "name": "triage", "title": "Web server triage", "triggers": ["triage"],
            "steps": [{"tool": "service_status"}, {"tool": "error_log"}, {"tool": "listening_sockets"},
                      {"tool": "disk_usage"}],
        }))
    actions = [
        Action.model_validate({"name": "restart", "title": "Restarting {server}", "triggers": ["restart"],
                               "tool": "restart", "params": {"server": "{server}"}, "defaults": {"server": "nginx"}}),
        Action.model_validate({"name": "stop", "title": "Stopping {server}", "triggers": ["stop"],
                               "tool": "stop", "params": {"server": "{server}"}, "defaults": {"server": "nginx"}}),
    ]
    tools = {"service_status": "t.status", "listening_sockets": "t.listeners", "error_log": "t.log",
             "disk_usage": "t.disk", "certificate": "t.cert", "restart": None, "stop": None}
    registry = {name: Registered(name, fn, frozenset(facts), frozenset(codes))
                for name, (fn, facts, codes) in ANALYZERS.items()}
    slots = load_squads()["webserver"].playbook().slots
    return Playbook(title="Test squad", description="a web server squad for tests", example="nginx returns 502",
                    runbooks=runbooks, actions=actions, programs=frozenset({"systemctl", "ss", "tail", "df"}),
                    analyzers=tools, registry=registry, slots={k: v for k, v in slots.items() if k == "server"})


HEALTHY = {
    "service_status": CallResult("ran", stdout="● nginx.service\n   Active: active (running) since Mon\n", exit_code=0),
    "listening_sockets": CallResult("ran", stdout="State Recv-Q Send-Q Local Address:Port\nLISTEN 0 511 0.0.0.0:80\n",
                                    exit_code=0),
    "error_log": CallResult("ran", stdout="2026/11/26 03:00:01 [notice] 1#1: signal process started\n", exit_code=0),
    "disk_usage": CallResult("ran", stdout="Filesystem Size Used Avail Use% Mounted on\n/dev/sda1 29G 12G 17G 41% /\n",
                             exit_code=0),
    "certificate": CallResult("ran", stdout="notAfter=Mar  1 00:00:00 2027 GMT\n", exit_code=0),
}


class Runtime:
    """Answers the brain's calls from a table of outputs (per tool), recording what was asked."""

    def __init__(self, outputs: dict[str, CallResult] | None = None) -> None:
        self.outputs = {**HEALTHY, **(outputs or {})}
        self.calls: list[Call] = []

    def respond(self, call: Call) -> CallResult:
        self.calls.append(call)
        assert call.tool is not None
        argv = [a.replace("{server}", str(call.params.get("server", ""))) for a in ARGV[call.tool]]
        if call.hold:
            return CallResult("approval", argv=argv, tool=call.tool, node="web-1", approval_id=str(len(self.calls)))
        base = self.outputs[call.tool]
        return CallResult(base.status, argv=argv, tool=call.tool, exit_code=base.exit_code, stdout=base.stdout,
                          stderr=base.stderr, reason=base.reason, node="web-1", agent="a")

    @property
    def tools(self) -> list[str | None]:
        return [c.tool for c in self.calls]


def turn(brain: RunbookBrain, text: str, state: State, runtime: Runtime) -> str:
    gen = brain.turn(text, state)
    said: list[str] = []
    result: CallResult | None = None
    while True:
        try:
            step = gen.send(result)
        except StopIteration:
            return "\n".join(said)
        if isinstance(step, Say):
            said.append(step.text)
            result = None
        else:
            result = runtime.respond(step)


# -- triage first --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["EVERYTHING is broken, EAI_AGAIN everywhere", "the job failed",
                                  "site is crawling since 9", "users can't log in"])
def test_an_unclear_operations_message_runs_the_triage_sweep(text: str) -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook()), text, State(), runtime)
    assert runtime.tools == ["service_status", "error_log", "listening_sockets", "disk_usage"]
    assert "not sure what you need" not in reply
    assert "healthy" in reply and "df -h" in reply


@pytest.mark.parametrize("text", ["thanks!", "hi there", "tell me a joke"])
def test_small_talk_gets_the_menu_and_runs_nothing(text: str) -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook()), text, State(), runtime)
    assert runtime.calls == []
    assert "not sure what you need" in reply and "Web server triage" not in reply


def test_without_a_triage_runbook_the_menu_stays() -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook(with_triage=False)), "the job failed", State(), runtime)
    assert runtime.calls == [] and "not sure what you need" in reply


def test_a_check_request_gives_a_healthy_verdict_listing_every_check() -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook()), "sanity check web-1 before the migration please", State(), runtime)
    assert reply.startswith("Web server triage: healthy.")
    for argv in ("systemctl status nginx --no-pager", "tail -n 200 /var/log/nginx/error.log", "ss -ltnp", "df -h"):
        assert f"`{argv}`" in reply


def test_a_message_naming_several_things_runs_each_runbook() -> None:
    runtime = Runtime({"disk_usage": CallResult("ran", stdout="/dev/sda1 29G 29G 0 100% /\n", exit_code=0)})
    reply = turn(RunbookBrain(playbook()), "check disk and cert on web-1", State(), runtime)
    assert runtime.tools == ["disk_usage", "certificate"]
    assert "/ is 100% full." in reply and "openssl x509" in reply


# -- no data is not clean; fallbacks --------------------------------------------------------------
def test_a_check_with_no_data_is_a_gap_never_nothing_wrong() -> None:
    runtime = Runtime({"error_log": CallResult("ran", stdout="", stderr="No journal files were found.\n", exit_code=0)})
    reply = turn(RunbookBrain(playbook()), "audit web-1", State(), runtime)
    assert "nothing wrong" not in reply and "healthy" not in reply
    assert "cannot say all is well" in reply
    assert "`tail -n 200 /var/log/nginx/error.log` gave me nothing to judge: the log had no lines to read" in reply


@pytest.mark.parametrize("result", [
    CallResult("ran", stdout="", stderr="System has not been booted with systemd as init system (PID 1). Can't operate.\n"
               "Failed to connect to bus: Host is down\n", exit_code=1),
    CallResult("ran", stdout="", stderr="systemctl: command not found\n", exit_code=127),
    CallResult("denied", reason="no rule allows systemctl on this node"),
])
def test_a_step_that_cannot_answer_runs_its_fallback(result: CallResult) -> None:
    runtime = Runtime({"service_status": result, "listening_sockets": CallResult("ran", stdout="State\n", exit_code=0)})
    reply = turn(RunbookBrain(playbook()), "connection refused on web-1", State(), runtime)
    assert runtime.tools == ["service_status", "listening_sockets", "error_log"]
    assert reply.startswith("**Nothing listens on port 80.**")
    assert "What I could not check:" in reply and "`systemctl status nginx --no-pager`" in reply


def test_a_step_that_answers_runs_no_fallback() -> None:
    failed = CallResult("ran", stdout="● nginx.service\n   Active: failed (Result: exit-code)\n", exit_code=3)
    runtime = Runtime({"service_status": failed})
    reply = turn(RunbookBrain(playbook()), "connection refused on web-1", State(), runtime)
    assert runtime.tools == ["service_status"]
    assert reply.startswith("**nginx has failed")


# -- placeholders ---------------------------------------------------------------------------------
def test_advice_with_a_fact_nobody_found_drops_the_sentence_not_the_braces() -> None:
    runtime = Runtime({"service_status": CallResult("ran", stderr="Failed to connect to bus: Host is down\n"
                                                    "System has not been booted with systemd", exit_code=1),
                       "listening_sockets": CallResult("ran", stdout="State\n", exit_code=0)})
    reply = turn(RunbookBrain(playbook()), "connection refused", State(), runtime)
    assert "{" not in reply and "Fix " not in reply


def test_complete_text_fills_what_it_can_and_never_leaves_a_placeholder() -> None:
    assert complete_text("Free space on {mount}. Then reload {server}.", {"server": "nginx"}) == "Then reload nginx."
    assert complete_text("Fix {file} at line {line}", {}) == "Fix the file at line the line"
    assert complete_text("Terminate {pid|blocker_pid}.", {"blocker_pid": 4821}) == "Terminate 4821."


def _templates(squad: Any) -> list[tuple[str, str]]:
    out = []
    for runbook in squad.runbooks:
        out += [(f"{runbook.name} title", runbook.title)]
        out += [(f"{runbook.name} advice {code}", text) for code, text in runbook.advice.items()]
        out += [(f"{runbook.name} offer", offer.text) for offer in runbook.offers]
    for action in squad.actions:
        out += [(f"{action.name} title", action.title), (f"{action.name} says", action.says)]
    return out


def test_no_template_of_any_bundle_leaves_a_placeholder_with_missing_facts() -> None:
    squads = load_squads()
    texts = [(f"{name}: {where}", t) for name, squad in squads.items() for where, t in _templates(squad)]
    catalogues = [*REPO.glob("squads/bundles/*/signatures/*.yaml"), *REPO.glob("squads/brain/signatures/*.yaml")]
    for path in catalogues:
        for entry in (yaml.safe_load(path.read_text()) or {}).get("signatures", []):
            texts += [(f"{path.name} {entry.get('id')} {k}", str(entry.get(k, ""))) for k in ("meaning", "fix")]
    assert len(texts) > 50
    for where, text in texts:
        for facts in ({}, {"message": "x"}):
            assert not PLACEHOLDER.search(complete_text(text, facts)), where


def test_reply_templates_render_without_a_placeholder() -> None:
    runbook = playbook().runbooks[0]
    replies = [
        render("replies/help", squad_title="T", runbooks=[runbook], example="e"),
        render("replies/ask", title="T", questions=["q?"]),
        render("replies/invalid", errors=["bad"]),
        render("replies/cannot", verb="exec", instead="do it yourself", squad_title="T", diagnosing=False),
        render("replies/diagnosis", title="T", headline=None, findings=[], checked=[], advice=[], offer="",
               gaps=[], standing=[], check=False),
    ]
    assert all(not PLACEHOLDER.search(r) for r in replies)


# -- conversations --------------------------------------------------------------------------------
def test_a_follow_up_never_repeats_the_previous_reply_word_for_word() -> None:
    brain, state = RunbookBrain(playbook()), State()
    runtime = Runtime({"disk_usage": CallResult("ran", stdout="/dev/sda1 29G 29G 0 100% /\n", exit_code=0)})
    first = turn(brain, "disk full on web-1", state, runtime)
    second = turn(brain, "why is the disk full?", state, runtime)
    assert first != second
    assert "/ is 100% full." in second and "Free space on" not in second or "What to do:" in second


def test_findings_stand_until_the_same_check_clears_them() -> None:
    brain, state = RunbookBrain(playbook()), State()
    full = Runtime({"disk_usage": CallResult("ran", stdout="/dev/sda1 29G 29G 0 100% /\n", exit_code=0)})
    assert "/ is 100% full." in turn(brain, "disk space on web-1", state, full)
    later = turn(brain, "and the cert?", state, Runtime())
    assert "nothing wrong" not in later and "healthy" not in later
    assert "still stands" in later and "/ is 100% full." in later
    cleared = turn(brain, "check the disk again", state, Runtime())
    assert "100% full" not in cleared and "nothing wrong" in cleared


def test_a_request_for_two_actions_requests_both_in_order() -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook()), "stop apache and restart nginx", State(), runtime)
    assert [(c.tool, c.params, c.hold) for c in runtime.calls] == [
        ("stop", {"server": "apache2"}, True), ("restart", {"server": "nginx"}, True)]
    assert reply.count("requested approval") == 2


@pytest.mark.parametrize("text,verb", [("exec into the pod and delete the lock file", "exec"),
                                       ("block this IP 203.0.113.9", "block"), ("please kill that process", "kill")])
def test_a_change_without_a_tool_is_refused_with_what_to_do_instead(text: str, verb: str) -> None:
    runtime = Runtime()
    reply = turn(RunbookBrain(playbook()), text, State(), runtime)
    assert runtime.calls == []
    assert reply.startswith(f"I cannot {verb}") and "What you can do instead" in reply


# -- wording ----------------------------------------------------------------------------------------
def test_wording_rules() -> None:
    assert is_check_request("is everything ok on db-5?") and is_check_request("audit sshd")
    assert not is_check_request("nginx returns 502")
    assert is_small_talk("thanks, cheers") and not is_small_talk("db is dying")
    assert unsupported_change("don't delete anything") is None
    assert unsupported_change("nginx won't start") is None


@pytest.mark.parametrize("text", ["scale checkout to 10.0.0.5", "pods can't connect to 10.0.0.5:5432",
                                  "traffic from 10.1.0.0/16 to 3 replicas"])
def test_an_address_is_never_read_as_a_replica_count(text: str) -> None:
    slots = load_squads()["k8s"].playbook().slots
    found = extract(text, slots)
    assert "replicas" not in found.errors
    assert found.values.get("replicas") in (None, "3", 3)
