"""Widening a diagnosis that ended without a cause: the checks that may hold the evidence.

A runbook's steps follow the evidence they find; when they end without a cause, the evidence is
often in a check the runbook only *offers* ("Shall I also read the container's log?"), in the
squad's breadth-first ``triage`` sweep, or in the check another runbook offers after a command that
ran here (the listeners runbook offers the setuid sweep after ``ss``). An engineer runs those
before saying "I found nothing", and so does the brain: a few of them, read-only, never one that
already ran. A check or audit request ("check everything", "a quick security pass") widens even
when something was found: the user asked for the whole sweep, not for the first problem.
"""

from __future__ import annotations

from collections.abc import Iterable

from squads.brain.models import Finding, Playbook, Runbook, Severity, Step
from squads.brain.steps import holds

WIDEN = 4  # at most this many extra commands: widening is a sweep's tail, not a second diagnosis
SWEEP = 10  # and never past this many commands in the whole diagnosis (a turn stays short to read)
TRIAGE = "triage"
# A message that leads with one of these asks a yes/no question ("is it filling up?", "does the
# config test pass?"): what the runbook found is its answer, not a diagnosis that came up short.
YES_NO = frozenset("is are does do did can could has have was were should will would".split())


def widen_budget(*, spent: int, max_steps: int) -> int:
    """How many extra commands widening may run after ``spent`` ones."""
    return max(0, min(WIDEN, max_steps - spent, SWEEP - spent))


def has_cause(findings: Iterable[Finding]) -> bool:
    """Whether some finding explains the problem (a CAUSE)."""
    return any(f.severity >= Severity.CAUSE for f in findings)


def widening_steps(playbook: Playbook, runbook: Runbook, findings: list[Finding], facts: dict[str, object], *,
                   check: bool, asked: bool, ran: set[str]) -> list[Step]:
    """The extra steps to run after ``runbook``'s own ones, in order: its offers whose conditions
    hold, the squad's triage sweep, then the offers of the runbooks that start with a tool that
    ran (``ran``: tool names). Empty when the diagnosis has a cause and the user did not ask for a
    check. Steps of tools that change state, or that already ran, are left out; the caller runs at
    most ``WIDEN`` of them within the runbook's ``max_steps``."""
    if not check and (has_cause(findings) or asked):
        return []
    names = set(runbook.name.split("+"))
    offers = [o for o in runbook.offers if holds(o.when, facts)]
    steps: list[Step] = [s for o in offers for s in o.steps]
    triage = next((r for r in playbook.runbooks if r.name == TRIAGE), None)
    if triage is not None and TRIAGE not in names:
        steps += triage.steps
    for other in playbook.runbooks:
        if other.name in names or other.name == TRIAGE or other.steps[0].tool not in ran:
            continue
        steps += [s for o in other.offers if holds(o.when, facts) for s in o.steps]
    out: list[Step] = []
    for step in steps:
        tools = [s.tool for s in step.flat()]
        if any(t not in playbook.tools or playbook.tools[t].changes for t in tools):
            continue  # never a state change, never a tool this squad does not know
        if step.tool in ran and not step.foreach or step in out:
            continue
        # No fallbacks: a widened check that cannot answer is a gap, not the start of another sweep.
        out.append(step.model_copy(update={"fallback": []}))
    return out


def offer_ran(runbook: Runbook, index: int, ran: set[str]) -> bool:
    """Whether every step of ``runbook``'s offer ``index`` already ran (widening did it): it is not
    offered again."""
    return all(s.tool in ran for s in runbook.offers[index].steps)
