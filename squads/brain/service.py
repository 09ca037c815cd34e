"""The runbook brain: one turn of a conversation, from the user's words to a reply.

Deterministic: the same message, state and outputs always give the same
calls and the same words. Every command goes out as a ``Call`` that the
runtime puts through the policy and the audit log; the brain only reads the
results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from squads.brain.actions import Call, CallResult, Say, Turn
from squads.brain.analyzers import Output, analyze, shared
from squads.brain.explicit import explicit_command
from squads.brain.extract import Extraction, extract
from squads.brain.intents import best_match, is_affirmative, is_negative, words
from squads.brain.models import Action, Analysis, Facts, Playbook, Runbook, Step
from squads.brain.steps import PLACEHOLDER, complete_text, fill, forget_evidence, merge_facts
from squads.brain.diagnosis import Runner, plan_next_checks, seed
from squads.brain.followups import answer, answering_steps, answering_tools, argvs_of, is_recheck
from squads.brain.followups import recheck as recheck_reply
from squads.brain.questions import ends_yes_no, is_follow_up
from squads.brain.verdict import bearing_on, compose, from_evidence, pick_offer, track
from squads.brain.widen import offer_ran, widen_budget, widening_steps
from squads.brain.wording import clauses, sentences, imperative, is_check_request, is_small_talk, normalised, unsupported_change
from prompts.service import render
from squads.textsafety.redact import redact

MAX_MESSAGE = 8000
TRIAGE = "triage"  # the runbook a message on operations that no other runbook claims starts
LIST_WORDS = 16  # a sentence that names several things to check is short


@dataclass
class State:
    """What the brain remembers between turns (stored as JSON by the runtime)."""

    facts: Facts = field(default_factory=dict)
    pending: dict[str, Any] | None = None  # {"kind": "runbook"|"action", "name": ...}
    offer: dict[str, Any] | None = None  # {"runbook": name, "index": i}
    last_runbook: str | None = None  # what "now check web-2 too" repeats
    # Problems found earlier in the conversation; they stand until the same check no longer shows them.
    flagged: list[dict[str, Any]] = field(default_factory=list)
    last_reply: str = ""  # a follow-up never gets the same words again
    # Outputs of the last diagnosis on this node, kept in memory only (not stored): a follow-up
    # question re-reads them instead of running the same commands again.
    results: dict[str, CallResult] = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict[str, Any]) -> State:
        return cls(
            facts=dict(data.get("facts", {})), pending=data.get("pending"), offer=data.get("offer"),
            last_runbook=data.get("last_runbook"), flagged=list(data.get("flagged", [])),
            last_reply=str(data.get("last_reply", "")),
        )

    def dump(self) -> dict[str, Any]:
        return {"facts": self.facts, "pending": self.pending, "offer": self.offer, "last_runbook": self.last_runbook,
                "flagged": self.flagged, "last_reply": self.last_reply}


class RunbookBrain:
    """The offline planner for one squad."""

    def __init__(self, playbook: Playbook) -> None:
        self.squad = playbook
        self.programs = set(playbook.programs)
        self.registry = {**shared(), **playbook.registry}
        self.slots = playbook.slots
        self.next_plans = plan_next_checks(playbook)  # how a log signature's next checks run here

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
        runbook, runbook_score = self._best_runbook(text)
        answers = pending is not None and self._answers(pending, found)
        triage = self._runbook(TRIAGE)
        check = is_check_request(text)
        # A value that would not be safe in a command is reported first ("check pod api-1;rm -rf /").
        change = unsupported_change(text) if action is None and not found.errors else None
        if action is not None and action_score >= runbook_score:
            yield from self._act_in_order(text, action, found, state)
            return
        if answers and runbook_score < 3:
            yield from self._continue(pending, found, state)
            return
        if change is not None:
            verb, instead = change
            yield Say(render("replies/cannot", verb=verb, instead=instead, squad_title=self.squad.title,
                             diagnosing=runbook is not None))
            if runbook is None:
                return
        previous = self._runbook(state.last_runbook) if state.last_runbook and not node_changed else None
        if previous is not None and is_recheck(text) and (runbook is None or runbook.name == previous.name):
            # "ran userdel, it's gone now. we good?": the same checks again on fresh output, so evidence
            # can clear what they found; never the old outputs re-read.
            yield from self._start(previous, found, state, recheck=True)
        elif runbook is not None and runbook.name == state.last_runbook and is_follow_up(text) and not node_changed:
            # A question about the diagnosis just made ("what labels do those pods carry?") is answered
            # from it: same evidence, re-read, not a fresh start from the question's few words.
            yield from self._start(runbook, found, state, reuse=True, question=text)
        elif runbook is not None:
            for slot in [name for name, spec in self.slots.items() if not spec.keep]:
                state.facts.pop(slot, None)  # a new question is about a new subject unless it says otherwise
            # A question in a conversation that already has a diagnosis is still a question: answer it first.
            asking = text if previous is not None and is_follow_up(text) and not is_recheck(text) else ""
            yield from self._start(self._covering(text, runbook), found, state, check=check, question=asking)
        elif check and triage is not None:
            yield from self._start(triage, found, state, check=True)
        elif state.last_runbook and (node_changed or is_follow_up(text)) and self._runbook(state.last_runbook):
            previous = self._runbook(state.last_runbook)
            assert previous is not None
            yield from self._start(previous, found, state, reuse=not node_changed, question=text)
        elif found.errors:
            yield Say(render("replies/invalid", errors=list(found.errors.values())))
        elif triage is not None and not is_small_talk(text):
            # On a selected node, a message about operations that no runbook claims starts the sweep an
            # engineer would start with, rather than a menu.
            yield from self._start(triage, found, state, check=check)
        else:
            yield Say(
                render(
                    "replies/help", squad_title=self.squad.title,
                    runbooks=[r for r in self.squad.runbooks if r.name != TRIAGE],
                    example=self.squad.example or self.squad.description,
                )
            )

    # -- what the message asks for ---------------------------------------------------
    def _best_runbook(self, text: str) -> tuple[Runbook | None, int]:
        """The runbook the words claim, read as written and with synonyms folded ("crawling": slow)."""
        found = best_match(self.squad.runbooks, text)
        folded = best_match(self.squad.runbooks, normalised(text))
        return folded if folded[1] > found[1] else found

    def _runbook(self, name: str) -> Runbook | None:
        """A runbook by name; ``a+b`` is the runbooks a and b run as one diagnosis."""
        parts = [next((r for r in self.squad.runbooks if r.name == n), None) for n in name.split("+")]
        if any(p is None for p in parts) or not parts:
            return None
        return parts[0] if len(parts) == 1 else self._combined([p for p in parts if p is not None])

    def _covering(self, text: str, best: Runbook) -> Runbook:
        """Every runbook a part of the message names ("setuid binaries and privileged accounts", "disk
        and cert"), as one diagnosis; just ``best`` when the message is about one thing."""
        # Only a short sentence that lists things ("disk and cert", "setuid binaries, privileged
        # accounts"): a long story mentions many things in passing and is about one of them.
        chosen: list[Runbook] = []
        for sentence in sentences(text):
            if len(words(sentence)) > LIST_WORDS:
                continue
            for part in clauses(sentence):
                runbook, score = self._best_runbook(part)
                if runbook is not None and score > 0 and runbook not in chosen and runbook.name != TRIAGE:
                    chosen.append(runbook)
        if len(chosen) < 2 or best not in chosen:
            return best
        chosen.remove(best)
        return self._combined([best, *chosen])

    def _combined(self, runbooks: list[Runbook]) -> Runbook:
        first = runbooks[0]
        return first.model_copy(update={
            "name": "+".join(r.name for r in runbooks),
            "title": " and ".join(r.title for r in runbooks),
            "steps": [s for r in runbooks for s in self._steps_of(r)], "also": {},
            "needs": {k: v for r in runbooks for k, v in r.needs.items()},
            "defaults": {k: v for r in reversed(runbooks) for k, v in r.defaults.items()},
            "seed": {k: v for r in runbooks for k, v in r.seed.items()},
            "seed_paths": next((r.seed_paths for r in runbooks if r.seed_paths), None),
            "seed_targets": next((r.seed_targets for r in runbooks if r.seed_targets), None),
            "offers": [o for r in runbooks for o in r.offers],
            "advice": {k: v for r in reversed(runbooks) for k, v in r.advice.items()},
            "ask_if_nothing": {}, "max_steps": min(40, sum(r.max_steps for r in runbooks)),
        })

    def _act_in_order(self, text: str, first: Action, found: Extraction, state: State) -> Turn:
        """ "stop apache and restart nginx": each action the message asks for, in its order, each
        with the values of its own clause; a single request is just that one."""
        requested: list[tuple[Action, Extraction]] = []
        for part in clauses(text):
            action, _ = best_match([a for a in self.squad.actions if imperative(a, part)], part)
            if action is not None:
                requested.append((action, extract(part, self.slots)))
        if len(requested) < 2:
            yield from self._start(first, found, state)
            return
        for action, values in requested:
            merged = Extraction(values={**found.values, **values.values}, errors=values.errors, text=found.text)
            yield from self._start(action, merged, state)

    def _continue(self, pending: dict[str, Any] | None, found: Extraction, state: State) -> Turn:
        target = self._pending_target(pending) if pending else None
        if target is not None:
            yield from self._start(target, found, state)

    # -- helpers ---------------------------------------------------------------------
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

    def _start(self, target: Runbook | Action, found: Extraction, state: State, *, reuse: bool = False,
               check: bool = False, question: str = "", recheck: bool = False) -> Turn:
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
            title = complete_text(target.title, state.facts)
            yield Say(render("replies/ask", title=title, questions=[target.needs[s] for s in missing]))
            return
        state.pending = None
        if isinstance(target, Runbook):
            state.last_runbook = target.name
            if not reuse and not question:  # a follow-up question may re-read what was just gathered
                state.results = {}
            yield from self._diagnose(target, self._steps_of(target), state, with_offers=True, check=check or recheck,
                                      question=question, recheck=recheck)
        else:
            yield from self._act(target, state)

    def _act(self, action: Action, state: State) -> Turn:
        if action.tool is None:
            yield Say(complete_text(action.says, state.facts))
            return
        params = fill(dict(action.params), state.facts)
        if params is None:
            missing = [n.split("|")[0] for v in action.params.values() if isinstance(v, str) for n in PLACEHOLDER.findall(v)
                       if fill({"x": "{" + n + "}"}, state.facts) is None]
            state.pending = {"kind": "action", "name": action.name, "missing": missing}
            yield Say(f"Before I request that, I need to know: which {' and '.join(missing)}? Nothing has run.")
            return
        title = complete_text(action.title, state.facts)
        result = yield Call(tool=action.tool, params=params, hold=True, title=title, why=title)
        assert result is not None
        yield Say(render("replies/approval", title=title, bearing=bearing_on(state.flagged, action.title),
                         **_result_fields(result)))

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

    def _diagnose(self, runbook: Runbook, steps: list[Step], state: State, *, with_offers: bool,
                  check: bool = False, question: str = "", recheck: bool = False) -> Turn:
        if with_offers:
            forget_evidence(state.facts, self.slots)  # a new diagnosis starts from what the user said, not from old evidence
        seed(runbook, state.facts)
        # A question runs the checks whose words match it (fresh: it asks about now); other outputs are re-read.
        asked = answering_tools(question, self.squad, ran=[k.split(":", 1)[0] for k in state.results]) if question else []
        for key in [k for k in state.results if k.split(":", 1)[0] in asked]:
            del state.results[key]
        runner = Runner(registry=self.registry, analyzers=self.squad.analyzers, runbook=runbook,
                        facts=state.facts, results=state.results, next_plans=self.next_plans)
        outcome = yield from runner.run(steps)
        if asked:
            outcome = yield from runner.run(answering_steps(asked, self.squad, state.facts))
        if not outcome.checked and runbook.ask_if_nothing:
            state.pending = {"kind": "runbook", "name": runbook.name, "missing": list(runbook.ask_if_nothing)}
            yield Say(render("replies/ask", title=runbook.title, questions=list(runbook.ask_if_nothing.values())))
            return
        ran = {k.split(":", 1)[0] for k in runner.done}
        check = check or runbook.name == TRIAGE
        extra = widen_budget(spent=runner.spent, max_steps=runbook.max_steps) if with_offers and not question and not recheck else 0
        wider = widening_steps(self.squad, runbook, outcome.findings, state.facts, check=check, ran=ran,
                               asked=ends_yes_no(str(state.facts.get("raw_message", "")))) if extra else []
        if wider:
            outcome = yield from runner.run(wider, budget=extra)
            ran = {k.split(":", 1)[0] for k in runner.done}
        state.offer = None
        offer = pick_offer(runbook, state.facts) if with_offers else None
        if offer is not None and offer_ran(runbook, offer[0], ran):
            offer = None  # widening ran it already
        if offer is not None:
            state.offer = {"runbook": runbook.name, "index": offer[0]}
        before = [dict(item) for item in state.flagged]
        standing = track(state.flagged, outcome)
        reply = compose(runbook, outcome, state.facts, standing=standing, offer=offer[1] if offer else "", check=check)
        if recheck:
            reply = recheck_reply(before, outcome, reply)
        elif asked:
            reply = answer(question, outcome, argvs_of(asked, runner.done, state.results, outcome), reply)
        if question and reply == state.last_reply:
            reply = from_evidence(question, reply)  # a follow-up never gets the same words twice
        state.last_reply = reply
        yield Say(reply)


def _slots_of(target: Runbook | Action) -> list[str]:
    if isinstance(target, Action):
        templates = list(target.params.values())
    else:
        templates = [v for s in target.steps for v in s.with_.values()] + ["{" + v + "}" for v in target.seed.values()]
    return [n for v in templates if isinstance(v, str) for group in PLACEHOLDER.findall(v) for n in group.split("|")]


def _result_fields(result: CallResult) -> dict[str, Any]:
    return {
        "status": result.status, "argv": result.argv, "node": result.node, "agent": result.agent,
        "reason": result.reason, "exit_code": result.exit_code, "approval_id": result.approval_id,
    }
