"""The runbook brain: one turn of a conversation, from the user's words to a reply.

Deterministic: the same message, state and outputs always give the same
calls and the same words. Every command goes out as a ``Call`` that the
runtime puts through the policy and the audit log; the brain only reads the
results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from squads.brain.actions import Call, CallResult, Say, Turn
from squads.brain.analyzers import Output, analyze, shared
from squads.brain.explicit import explicit_command
from squads.brain.extract import Extraction, all_paths, extract
from squads.brain.intents import best_match, is_affirmative, is_negative, trigger_matches, words
from squads.brain.parsers.logs import find_host_ports
from squads.brain.models import Action, Analysis, Facts, Finding, Playbook, Runbook, Severity, Step
from squads.brain.steps import PLACEHOLDER, fill, fill_text, forget_evidence, holds, merge_facts, next_step
from prompts.service import render
from squads.textsafety.redact import redact

MAX_MESSAGE = 8000


@dataclass
class State:
    """What the brain remembers between turns (stored as JSON by the runtime)."""

    facts: Facts = field(default_factory=dict)
    pending: dict[str, Any] | None = None  # {"kind": "runbook"|"action", "name": ...}
    offer: dict[str, Any] | None = None  # {"runbook": name, "index": i}
    last_runbook: str | None = None  # what "now check web-2 too" repeats
    # Outputs of the last diagnosis on this node, kept in memory only (not stored): a follow-up
    # question re-reads them instead of running the same commands again.
    results: dict[str, CallResult] = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict[str, Any]) -> State:
        return cls(
            facts=dict(data.get("facts", {})), pending=data.get("pending"), offer=data.get("offer"),
            last_runbook=data.get("last_runbook"),
        )

    def dump(self) -> dict[str, Any]:
        return {"facts": self.facts, "pending": self.pending, "offer": self.offer, "last_runbook": self.last_runbook}


@dataclass
class Checked:
    """One command of a diagnosis as the reply lists it."""

    argv: list[str]
    summary: str

    @property
    def shown(self) -> list[str]:
        """The argv with a long SQL text shortened (the full command is in the transcript)."""
        return [a if len(a) <= 90 else a[:60].rstrip() + " …" for a in self.argv]


FOLLOW_UP = frozenset({"too", "also", "again", "same", "likewise", "either"})
QUESTION_WORDS = frozenset("what why how which who where when is are does do did can could has have was were should".split())


IMPERATIVE_LEAD = frozenset(
    """please pls kindly can could would will you go ahead and now ok okay k then just so lets let's hey i we
    want need to should must cool yes yeah alright fine right sure meanwhile also first anyway ugh argh hmm
    well""".split()
)
NEGATIONS = ("don't", "dont", "do not", "never", "no need", "without", "not yet", "shouldn't", "should not")


def imperative(action: Action, text: str) -> bool:
    """Whether the message asks for ``action`` in so many words: one of its triggers starts a
    clause, or follows a word like "please", "now", "ok", "can you", and that clause is not negated.

    "Since the restart this morning nginx returns 502" mentions a restart but asks for none;
    "don't stop it" asks for the opposite; "ci pushed the tag, now delete that pod" asks."""
    for clause in re.split(r"[.;:!?\n]|,|\bthen\b|\band\b", text.lower()):
        if any(n in clause for n in NEGATIONS):
            continue
        said = words(clause)
        for i, word in enumerate(said):
            at_start = all(w in IMPERATIVE_LEAD for w in said[:i])
            if not (at_start or said[i - 1] in IMPERATIVE_LEAD):
                continue
            if any(_first_group_hits(t, word) and trigger_matches(t, said[i:]) for t in action.triggers):
                return True
    return False


def _first_group_hits(trigger: str, word: str) -> bool:
    return trigger_matches(trigger.split()[0], [word])


class RunbookBrain:
    """The offline planner for one squad."""

    def __init__(self, playbook: Playbook) -> None:
        self.squad = playbook
        self.programs = set(playbook.programs)
        self.registry = {**shared(), **playbook.registry}
        self.slots = playbook.slots

    # -- entry point -----------------------------------------------------------------
    def turn(self, text: str, state: State) -> Turn:
        """Handle one user message; yields ``Say``/``Call``, receives ``CallResult``."""
        if len(text) > MAX_MESSAGE:
            yield Say(
                f"That message is {len(text):,} characters long; I read at most {MAX_MESSAGE:,}. "
                "Paste the part that matters (the error lines, the names) and I will look."
            )
            return
        # An open offer or question lasts one turn: a reply about something else drops it, so an old
        # "which pod should be deleted?" can never be answered by a later, unrelated message.
        offer, pending = state.offer, state.pending
        state.offer = state.pending = None
        if state.facts.pop("node_changed", False):
            forget_evidence(state.facts, self.slots)
            state.results = {}
            offer = None
            node_changed = True
        else:
            node_changed = False
        argv = explicit_command(text, self.programs)
        if argv is not None:
            yield from self._explicit(argv, state)
            return
        found = extract(text, self.slots)
        action, action_score = best_match([a for a in self.squad.actions if imperative(a, text)], text)
        # "ok, kill the blocker" is a request to act, not a yes to the offer made before it.
        if offer and action is None and is_affirmative(text):
            self._learn(found, state)
            yield from self._run_offer(offer, state)
            return
        if offer and action is None and is_negative(text):
            yield Say("OK, I will leave it there. Tell me what else to look at.")
            return
        runbook, runbook_score = best_match(self.squad.runbooks, text)
        answers = pending is not None and self._answers(pending, found)
        if action is not None and action_score >= runbook_score:
            yield from self._start(action, found, state)
        elif answers and runbook_score < 3:
            yield from self._continue(pending, found, state)
        elif runbook is not None and runbook.name == state.last_runbook and self._follow_up(text) and not node_changed:
            # A question about the diagnosis just made ("what labels do those pods carry?") is answered
            # from it: same evidence, re-read, not a fresh start from the question's few words.
            yield from self._start(runbook, found, state, reuse=True)
        elif runbook is not None:
            for slot in [name for name, spec in self.slots.items() if not spec.keep]:
                state.facts.pop(slot, None)  # a new question is about a new subject unless it says otherwise
            yield from self._start(runbook, found, state)
        elif state.last_runbook and (node_changed or self._follow_up(text)):
            previous = next((r for r in self.squad.runbooks if r.name == state.last_runbook), None)
            if previous is not None:
                yield from self._start(previous, found, state, reuse=not node_changed)
        elif found.errors:
            yield Say(render("replies/invalid", errors=list(found.errors.values())))
        else:
            yield Say(
                render(
                    "replies/help", squad_title=self.squad.title,
                    runbooks=self.squad.runbooks, example=self.squad.example or self.squad.description,
                )
            )

    def _continue(self, pending: dict[str, Any] | None, found: Extraction, state: State) -> Turn:
        target = self._pending_target(pending) if pending else None
        if target is not None:
            yield from self._start(target, found, state)

    # -- helpers ---------------------------------------------------------------------
    def _follow_up(self, text: str) -> bool:
        """ "Same for staging", "what about the other one", or any question with no symptom of its own
        ("what do I need to change?"): the previous diagnosis again, whose reply answers it."""
        said = words(text)
        question = text.rstrip().endswith("?") or (bool(said) and said[0] in QUESTION_WORDS)
        return bool(set(said) & FOLLOW_UP) or "what about" in text.lower() or question

    def _answers(self, pending: dict[str, Any], found: Extraction) -> bool:
        missing = pending.get("missing", [])
        return any(slot in found.values or slot in found.errors for slot in missing)

    def _pending_target(self, pending: dict[str, Any]) -> Runbook | Action | None:
        pool: list[Runbook] | list[Action] = self.squad.runbooks if pending["kind"] == "runbook" else self.squad.actions
        return next((item for item in pool if item.name == pending["name"]), None)

    def _learn(self, found: Extraction, state: State, *, follow_up: bool = False) -> None:
        for slot, value in found.values.items():
            state.facts[slot] = value
        # Analyzers may revise a guessed default (nginx -> apache2) but never what the user said.
        state.facts["user_slots"] = {**state.facts.get("user_slots", {}), **dict.fromkeys(found.values, True)}
        if follow_up and state.facts.get("message"):
            return  # the diagnosis being followed up keeps the words it started from
        # Analyzers may narrow to names the user wrote. Redacted before lower-casing: the secret
        # patterns are case-sensitive (AKIA..., -----BEGIN ...), and state is stored.
        clean = redact(found.text)[0]
        state.facts["message"] = clean.lower()
        state.facts["raw_message"] = clean  # case kept: paths, names

    def _start(self, target: Runbook | Action, found: Extraction, state: State, *, reuse: bool = False) -> Turn:
        relevant = set(target.needs) | set(_slots_of(target))
        errors = [msg for slot, msg in found.errors.items() if slot in relevant]
        if errors:
            yield Say(render("replies/invalid", errors=errors))
            return
        self._learn(found, state, follow_up=reuse)
        for slot, value in target.defaults.items():
            state.facts.setdefault(slot, value)
        missing = [slot for slot in target.needs if not state.facts.get(slot)]
        kind = "runbook" if isinstance(target, Runbook) else "action"
        if missing:
            state.pending = {"kind": kind, "name": target.name, "missing": missing}
            title = PLACEHOLDER.sub("", fill_text(target.title, state.facts)).strip()
            yield Say(render("replies/ask", title=title, questions=[target.needs[s] for s in missing]))
            return
        state.pending = None
        if isinstance(target, Runbook):
            state.last_runbook = target.name
            if not reuse:
                state.results = {}
            yield from self._diagnose(target, self._steps_of(target), state, with_offers=True)
        else:
            yield from self._act(target, state)

    def _act(self, action: Action, state: State) -> Turn:
        if action.tool is None:
            yield Say(fill_text(action.says, state.facts))
            return
        params = fill(dict(action.params), state.facts)
        if params is None:
            missing = [n.split("|")[0] for v in action.params.values() if isinstance(v, str) for n in PLACEHOLDER.findall(v)
                       if fill({"x": "{" + n + "}"}, state.facts) is None]
            state.pending = {"kind": "action", "name": action.name, "missing": missing}
            yield Say(f"Before I request that, I need to know: which {' and '.join(missing)}? Nothing has run.")
            return
        title = fill_text(action.title, state.facts)
        result = yield Call(tool=action.tool, params=params, hold=True, title=title, why=title)
        assert result is not None
        yield Say(render("replies/approval", title=title, **_result_fields(result)))

    def _explicit(self, argv: list[str], state: State) -> Turn:
        result = yield Call(argv=argv, why="the user asked for this command")
        assert result is not None
        fields = _result_fields(result)
        if result.status == "approval":
            yield Say(render("replies/approval", title=f"`{argv[0]}` with these arguments", **fields))
            return
        analysis = Analysis()
        if result.status == "ran":
            analyzer = self.squad.analyzers[result.tool] if result.tool else None
            output = Output(
                argv=result.argv, exit_code=result.exit_code or 0, stdout=result.stdout,
                stderr=result.stderr, tool=result.tool,
            )
            analysis = analyze(self.registry, analyzer, output, state.facts)
            merge_facts(state.facts, analysis.facts)
        ordered = sorted(analysis.findings, key=lambda f: -f.severity)
        yield Say(render("replies/explicit", summary=analysis.summary, findings=ordered, **fields))

    def _steps_of(self, runbook: Runbook) -> list[Step]:
        """The runbook's steps, then those of the runbooks it continues with, under their conditions."""
        steps = list(runbook.steps)
        for name, conditions in runbook.also.items():
            other = next(r for r in self.squad.runbooks if r.name == name)
            steps += [s.model_copy(update={"when": [*conditions, *s.when]}) for s in other.steps]
        return steps

    def _run_offer(self, offer: dict[str, Any], state: State) -> Turn:
        runbook = next((r for r in self.squad.runbooks if r.name == offer["runbook"]), None)
        if runbook is None or offer["index"] >= len(runbook.offers):
            yield Say("That offer is no longer available; tell me what to look at.")
            return
        yield from self._diagnose(runbook, runbook.offers[offer["index"]].steps, state, with_offers=False)

    def _diagnose(self, runbook: Runbook, steps: list[Step], state: State, *, with_offers: bool) -> Turn:
        facts = state.facts
        if with_offers:
            forget_evidence(state.facts, self.slots)  # a new diagnosis starts from what the user said, not from old evidence
        for target, slot in runbook.seed.items():
            if facts.get(slot):
                merge_facts(facts, {target: [facts[slot]]})
        if runbook.seed_paths:
            paths = [p for p in all_paths(str(facts.get("raw_message", "")))]
            if paths:
                merge_facts(facts, {runbook.seed_paths: paths})
        if runbook.seed_targets:
            pairs = find_host_ports(str(facts.get("message", "")))
            if pairs:
                merge_facts(facts, {f"{runbook.seed_targets}_hosts": [h for h, _ in pairs],
                                    f"{runbook.seed_targets}_ports": [p for _, p in pairs]})
        findings: list[Finding] = []
        checked: list[Checked] = []
        done: set[str] = set()
        for _ in range(runbook.max_steps):
            chosen = next_step(steps, facts, done)
            if chosen is None:
                break
            step, params, key, item = chosen
            done.add(key)
            command = key.rsplit("|", 1)[0]
            result = state.results.get(command)
            if result is None:
                result = yield Call(tool=step.tool, params=params, why=step.why or runbook.title)
                assert result is not None
                if result.status == "ran":
                    state.results[command] = result
            if result.status != "ran":
                checked.append(Checked(result.argv or [step.tool], _not_run(result)))
                if result.status in ("denied", "invalid", "error"):
                    what = f"`{' '.join(result.argv)}`" if result.argv else step.tool
                    findings.append(Finding("not_run", Severity.PROBLEM, f"I could not run {what}: {result.reason}"))
                continue
            output = Output(
                argv=result.argv, exit_code=result.exit_code or 0, stdout=result.stdout, stderr=result.stderr,
                tool=step.tool, item=item, params=params,
            )
            analysis = analyze(self.registry, step.analyze or self.squad.analyzers[step.tool], output, facts)
            merge_facts(facts, analysis.facts)
            findings.extend(f for f in analysis.findings if f not in findings)
            if all(c.argv != result.argv for c in checked):  # a reused output is listed once
                checked.append(Checked(result.argv, analysis.summary))
        if not checked and runbook.ask_if_nothing:
            state.pending = {"kind": "runbook", "name": runbook.name, "missing": list(runbook.ask_if_nothing)}
            yield Say(render("replies/ask", title=runbook.title, questions=list(runbook.ask_if_nothing.values())))
            return
        yield Say(self._compose(runbook, findings, checked, state, with_offers=with_offers))

    def _compose(
        self, runbook: Runbook, findings: list[Finding], checked: list[Checked], state: State, *, with_offers: bool
    ) -> str:
        # Deeper evidence comes later in a diagnosis, so among equals the later finding leads.
        ranked = sorted(enumerate(findings), key=lambda p: (-p[1].severity, -p[0]))
        ordered = _group([f for _, f in ranked])
        headline = ordered[0] if ordered and ordered[0].severity >= Severity.PROBLEM else None
        advice: list[str] = []
        for finding in ordered:
            text = runbook.advice.get(finding.code)
            if text:
                filled = fill_text(text, {**state.facts, **finding.data})
                if filled not in advice:
                    advice.append(filled)
        offer_text = ""
        state.offer = None
        if with_offers:
            for index, offer in enumerate(runbook.offers):
                if holds(offer.when, state.facts):
                    state.offer = {"runbook": runbook.name, "index": index}
                    offer_text = fill_text(offer.text, state.facts)
                    break
        # What was found healthy is part of the answer ("is the other replica ok?", "are the nodes up?");
        # it is listed last.
        return render(
            "replies/diagnosis", title=runbook.title, headline=headline,
            findings=[f for f in ordered if f is not headline],
            checked=checked, advice=advice, offer=offer_text,
        )


def _group(findings: list[Finding]) -> list[Finding]:
    """Fold findings that say the same thing about different pods into one ("same for: b, c")."""
    out: list[Finding] = []
    seen: dict[tuple[str, str], int] = {}
    extra: dict[int, list[str]] = {}
    for finding in findings:
        pod = str(finding.data.get("pod") or "")
        key = (finding.code, finding.text.replace(pod, "<pod>") if pod else finding.text)
        if pod and key in seen:
            extra[seen[key]].append(pod)
            continue
        seen[key] = len(out)
        extra[len(out)] = []
        out.append(finding)
    return [
        Finding(f.code, f.severity, f"{f.text} Same for: {', '.join(extra[i])}.", f.data) if extra[i] else f
        for i, f in enumerate(out)
    ]


def _slots_of(target: Runbook | Action) -> list[str]:
    if isinstance(target, Action):
        templates = list(target.params.values())
    else:
        templates = [v for s in target.steps for v in s.with_.values()] + ["{" + v + "}" for v in target.seed.values()]
    return [n for v in templates if isinstance(v, str) for group in PLACEHOLDER.findall(v) for n in group.split("|")]


def _not_run(result: CallResult) -> str:
    if result.status == "approval":
        return "held for approval, not run"
    if result.status == "denied":
        return f"refused by the policy: {result.reason}"
    return f"not run: {result.reason}"


def _result_fields(result: CallResult) -> dict[str, Any]:
    return {
        "status": result.status, "argv": result.argv, "node": result.node, "agent": result.agent,
        "reason": result.reason, "exit_code": result.exit_code, "approval_id": result.approval_id,
    }
