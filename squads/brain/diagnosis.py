"""Running a runbook's steps: the forward-chaining loop, step fallbacks, and what could not answer.

A step *could not answer* when the policy refused it or it was invalid, when its program is
missing (exit 126/127), or when its analyzer set the fact ``unavailable`` (e.g. "System has not
been booted with systemd"). Its ``fallback`` steps then run in its place (``nginx -t`` and the
listeners when ``systemctl`` cannot tell). A check that ran but had nothing to judge (a
``no_data`` finding) is a gap, never a clean result.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from squads.brain.actions import Call, CallResult
from squads.brain.analyzers import Output, analyze
from squads.brain.extract import all_paths
from squads.brain.models import Analysis, Facts, Finding, Playbook, Registered, Runbook, Severity, Step
from squads.brain.parsers.logs import find_host_ports
from squads.brain.steps import fill, merge_facts, next_step
from squads.brain.verdict import NO_DATA, Checked, Outcome, no_data_gap, not_run

MISSING_PROGRAM = (126, 127)  # "cannot execute" and "not found", as shells and executors report them
UNAVAILABLE = "unavailable"
Steps = Generator[Call, CallResult | None, Outcome]


def seed(runbook: Runbook, facts: Facts) -> None:
    """Facts a runbook takes from the user's words: named slots, paths, host:port pairs."""
    for target, slot in runbook.seed.items():
        if facts.get(slot):
            merge_facts(facts, {target: [facts[slot]]})
    if runbook.seed_paths:
        paths = all_paths(str(facts.get("raw_message", "")))
        if paths:
            merge_facts(facts, {runbook.seed_paths: paths})
    if runbook.seed_targets:
        pairs = find_host_ports(str(facts.get("message", "")))
        if pairs:
            merge_facts(facts, {f"{runbook.seed_targets}_hosts": [h for h, _ in pairs],
                                f"{runbook.seed_targets}_ports": [p for _, p in pairs]})


class Runner:
    """One diagnosis's loop over ``steps`` (see docs/squads.md, "How steps run")."""

    def __init__(self, *, registry: Mapping[str, Registered], analyzers: Mapping[str, str | None],
                 runbook: Runbook, facts: Facts, results: dict[str, CallResult],
                 next_plans: Mapping[str, tuple[dict[str, Any], ...]] | None = None) -> None:
        self.registry, self.analyzers, self.runbook = registry, analyzers, runbook
        self.next_plans = next_plans or {}  # read-only tool -> parameter templates (``plan_next_checks``)
        self.facts, self.results = facts, results
        self.outcome = Outcome(findings=[], checked=[], gaps=[], produced={})
        self.done: set[str] = set()
        self.spent = 0  # commands run (or re-read) so far in this diagnosis

    def run(self, steps: list[Step], *, budget: int | None = None) -> Steps:
        """Run eligible steps until none is left or ``budget`` (default ``max_steps``) commands ran,
        then the next checks of the error signatures the logs matched (within the same cap);
        returns the outcome."""
        budget = self.runbook.max_steps if budget is None else budget
        while budget > 0:
            chosen = next_step(steps, self.facts, self.done)
            if chosen is None:
                break
            step, params, key, item = chosen
            budget -= 1
            answered = yield from self._one(step, params, key, item)
            for fallback in [] if answered else step.fallback:
                filled = fill(fallback.with_, self.facts, item)
                if filled is None or budget <= 0:
                    continue
                key = f"{fallback.tool}:{sorted(filled.items())!r}|{fallback.analyze or ''}"
                if key in self.done:
                    continue
                budget -= 1
                yield from self._one(fallback, filled, key, item)
        yield from self._next_checks(budget)
        return self.outcome

    def _next_checks(self, budget: int) -> Generator[Call, CallResult | None, None]:
        """Once per diagnosis, after the runbook's own steps: the tools the matched error signatures
        name as next checks ("No space left on device" -> ``df -h``), most severe signature first,
        each at most once, never one that already ran, never one that changes anything (only the
        read-only tools of ``next_plans`` are known), within what is left of ``max_steps``. Only while
        the diagnosis has no cause of its own: once an analyzer established one (the disk is full, the
        upstream is down), the log's other errors are context, not leads worth more commands."""
        if any(f.severity >= Severity.CAUSE and f.code != SIGNATURE for f in self.outcome.findings):
            return
        for tool, why in wanted_checks(self.outcome.findings):
            if budget <= 0:
                return
            for template in self.next_plans.get(tool, ()):
                params = fill(template, self.facts)
                if params is None:
                    continue  # needs a value nobody found (which pod?): another template may do
                command = f"{tool}:{sorted(params.items())!r}"
                if any(k.rsplit("|", 1)[0] == command for k in self.done):
                    break  # the runbook ran it already
                budget -= 1
                yield from self._one(Step(tool=tool, why=why), params, f"{command}|", None)
                break

    def _one(self, step: Step, params: dict[str, Any], key: str, item: Any) -> Generator[Call, CallResult | None, bool]:
        """Run (or re-read) one command and analyze it; whether it answered."""
        self.done.add(key)
        self.spent += 1
        out = self.outcome
        command = key.rsplit("|", 1)[0]
        result = self.results.get(command)
        if result is None:
            result = yield Call(tool=step.tool, params=params, why=step.why or self.runbook.title)
            assert result is not None
            if result.status == "ran":
                self.results[command] = result
        shown = result.argv or [step.tool]
        if result.status != "ran":
            out.checked.append(Checked(shown, not_run(result)))
            if result.status in ("denied", "invalid", "error"):
                what = f"`{' '.join(result.argv)}`" if result.argv else step.tool
                finding = Finding("not_run", Severity.PROBLEM, f"I could not run {what}: {result.reason}")
                out.findings.append(finding)
                out.gaps.append(f"`{' '.join(shown)}` did not run ({not_run(result)}).")
            return result.status == "approval"
        output = Output(argv=result.argv, exit_code=result.exit_code or 0, stdout=result.stdout,
                        stderr=result.stderr, tool=step.tool, item=item, params=params)
        analysis: Analysis = analyze(self.registry, step.analyze or self.analyzers[step.tool], output, self.facts)
        unavailable = bool(analysis.facts.pop(UNAVAILABLE, False))
        merge_facts(self.facts, analysis.facts)
        for finding in analysis.findings:
            if finding in out.findings:
                continue
            out.findings.append(finding)
            out.produced[id(finding)] = list(result.argv)
            if finding.code == NO_DATA:
                out.gaps.append(no_data_gap(result.argv, finding))
        if all(c.argv != result.argv for c in out.checked):  # a reused output is listed once
            out.checked.append(Checked(result.argv, analysis.summary))
        if result.timed_out or result.truncated:  # answered only in part: one gap, never two
            out.gaps.append(cut_short(shown, result))
        missing = result.exit_code in MISSING_PROGRAM
        said = any(f.code == NO_DATA for f in analysis.findings)  # its analyzer's words already name the gap
        if (unavailable or missing) and not said:
            why = "the program is not installed here" if missing else (analysis.summary or "it cannot run on this system")
            out.gaps.append(f"`{' '.join(shown)}` could not answer: {why.rstrip('.')}.")
        return not (unavailable or missing)


SIGNATURE = "log_signature"  # the code of a catalogue finding (squads.brain.signatures)


def wanted_checks(findings: list[Finding]) -> list[tuple[str, str]]:
    """(tool, why) for every next check the reported error signatures name: the most severe
    signature first (then the order they were found), each tool once."""
    matched = [(int(f.data.get("rank", 9)), i, f) for i, f in enumerate(findings)
               if f.code == SIGNATURE and f.data.get("next_checks")]
    out: list[tuple[str, str]] = []
    for _, _, finding in sorted(matched, key=lambda m: m[:2]):
        for tool in finding.data["next_checks"]:
            if all(tool != t for t, _ in out):
                out.append((tool, f"the next check for the log line matching {finding.data.get('signature', 'a known error')}"))
    return out


def plan_next_checks(playbook: Playbook) -> dict[str, tuple[dict[str, Any], ...]]:
    """How a signature's next check can run in this squad: for each tool that changes nothing, the
    parameter templates its runbook steps use (``{server}``, ``/var/log/{server}``), filled from
    the diagnosis's facts when it runs; a tool without parameters runs as it is. A tool that
    needs approval is never planned, and a template that reads a loop item (``{item}``) never fills."""
    plans: dict[str, list[dict[str, Any]]] = {}
    steps = [f for r in playbook.runbooks for s in [*r.steps, *(s for o in r.offers for s in o.steps)] for f in s.flat()]
    for step in steps:
        known = plans.setdefault(step.tool, [])
        if dict(step.with_) not in known:
            known.append(dict(step.with_))
    for name, info in playbook.tools.items():
        if not info.params and {} not in plans.setdefault(name, []):
            plans[name].append({})
    return {tool: tuple(templates) for tool, templates in plans.items()
            if tool in playbook.tools and not playbook.tools[tool].changes}


def cut_short(argv: list[str], result: CallResult) -> str:
    """The gap a check leaves when it was stopped before it finished."""
    why = "it ran out of time and was stopped" if result.timed_out else "its output was longer than the limit and was cut"
    return f"`{' '.join(argv)}` was cut short: {why}, so only part of it was read and the rest was not checked."
