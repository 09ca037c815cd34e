"""The engine's widening rule (squads/brain/widen.py) and the approval's standing evidence
(verdict.bearing_on), on the shipped squads' runbooks."""

from __future__ import annotations

from squads.brain.models import Finding, Severity
from squads.brain.verdict import bearing_on
from squads.brain.widen import SWEEP, WIDEN, offer_ran, widen_budget, widening_steps
from squads.service import load_squads

SQUADS = load_squads()


def _runbook(squad: str, name: str):  # type: ignore[no-untyped-def]
    playbook = SQUADS[squad].playbook()
    return playbook, next(r for r in playbook.runbooks if r.name == name)


def test_a_clean_security_sweep_widens_to_the_setuid_sweep_after_ss() -> None:
    playbook, triage = _runbook("security", "triage")
    ran = {s.tool for s in triage.steps}
    steps = widening_steps(playbook, triage, [Finding("listeners_known", Severity.OK, "Every listener is known.")], {},
                           check=True, asked=False, ran=ran)
    tools = [s.tool for s in steps]
    assert "setuid_files" in tools  # the listeners runbook offers it after ss
    assert not set(tools) & ran  # never a tool that already ran
    assert all(not playbook.tools[t].changes for t in tools) and all(not s.fallback for s in steps)


def test_a_cause_stops_widening_unless_the_user_asked_for_a_check() -> None:
    playbook, listeners = _runbook("security", "listeners")
    cause = [Finding("listener_disguised", Severity.CAUSE, "kthreadd-x listens on 0.0.0.0:31337.")]
    assert widening_steps(playbook, listeners, cause, {}, check=False, asked=False, ran={"listening_sockets"}) == []
    wide = [s.tool for s in widening_steps(playbook, listeners, cause, {}, check=True, asked=False,
                                           ran={"listening_sockets"})]
    assert wide[:2] == ["setuid_files", "accounts"]  # its own offer first, then the triage sweep
    assert "recent_logins" in wide


def test_a_yes_no_question_is_answered_not_widened() -> None:
    playbook, config = _runbook("webserver", "config-failure")
    problem = [Finding("disk_high", Severity.PROBLEM, "/srv is 91% full.")]
    assert widening_steps(playbook, config, problem, {}, check=False, asked=True, ran={"service_status"}) == []
    assert widening_steps(playbook, config, problem, {}, check=False, asked=False, ran={"service_status"})


def test_budget_and_offers_already_run() -> None:
    assert widen_budget(spent=2, max_steps=12) == WIDEN
    assert widen_budget(spent=SWEEP - 1, max_steps=40) == 1
    assert widen_budget(spent=9, max_steps=9) == 0
    _, listeners = _runbook("security", "listeners")
    assert offer_ran(listeners, 0, {"setuid_files", "accounts", "listening_sockets"})
    assert not offer_ran(listeners, 0, {"listening_sockets", "accounts"})


def test_an_approval_carries_the_standing_finding_about_that_action() -> None:
    flagged = [
        {"code": "config_test_failed", "text": "The configuration test fails: a reload or restart would fail.", "argv": []},
        {"code": "disk_high", "text": "/var is 93% full.", "argv": []},
    ]
    assert bearing_on(flagged, "Restarting caddy") == [flagged[0]["text"]]
    assert bearing_on(flagged, "Reload haproxy") == [flagged[0]["text"]]
    assert bearing_on(flagged, "Delete pod web-7") == []
