"""Turning a diagnosis's findings into the reply: the headline, the verdict, what could not be
checked, and what earlier turns found that still stands.

The rules that keep a verdict honest:

- "nothing wrong" / "healthy" only when every check ran and came back with data, and the reply
  lists those checks;
- a check that returned nothing (a ``no_data`` finding) or could not run on this system (the
  analyzer set ``unavailable``, the program is missing, the policy refused it) is named as a gap;
- a problem found earlier in the conversation stays a finding until a later run of the same
  command no longer shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prompts.service import render
from squads.brain.actions import CallResult
from squads.brain.intents import words
from squads.brain.models import Finding, Runbook, Severity
from squads.brain.steps import complete_text, holds

NO_DATA = "no_data"
MAX_FLAGGED = 12


@dataclass
class Checked:
    """One command of a diagnosis as the reply lists it."""

    argv: list[str]
    summary: str

    @property
    def shown(self) -> list[str]:
        """The argv with a long SQL text shortened (the full command is in the transcript)."""
        return [a if len(a) <= 90 else a[:60].rstrip() + " …" for a in self.argv]


@dataclass
class Outcome:
    """Everything one diagnosis gathered, for the reply."""

    findings: list[Finding]
    checked: list[Checked]
    gaps: list[str]  # checks that could not answer, in words
    produced: dict[int, list[str]]  # id(finding) -> the argv that produced it


def group(findings: list[Finding]) -> list[Finding]:
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


def not_run(result: CallResult) -> str:
    """The one-line summary of a command that did not run."""
    if result.status == "approval":
        return "held for approval, not run"
    if result.status == "denied":
        return f"refused by the policy: {result.reason}"
    return f"not run: {result.reason}"


def no_data_gap(argv: list[str], finding: Finding) -> str:
    """"`journalctl …` returned no entries, so I can't tell whether …" in the finding's own words."""
    shown = " ".join(argv) if argv else str(finding.data.get("check", "a check"))
    return f"`{shown}` gave me nothing to judge: {finding.text.rstrip('.')}. So I can't tell from it whether all is well."


def track(flagged: list[dict[str, Any]], outcome: Outcome) -> list[dict[str, Any]]:
    """Earlier problems that still stand (not shown again, not cleared), and ``flagged`` updated.

    A problem is cleared only by evidence: the command that showed it ran again and no longer
    shows it. Everything else an earlier turn flagged stays flagged."""
    ran = [c.argv for c in outcome.checked if c.summary and not c.summary.startswith(("not run", "refused", "held"))]
    current = {(f.code, f.text) for f in outcome.findings}
    standing: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for item in flagged:
        if (item["code"], item["text"]) in current:
            continue  # found again now: the new one replaces it
        if item.get("argv") and item["argv"] in ran and not any(f.code == item["code"] for f in outcome.findings):
            continue  # the same check ran again and no longer shows it: cleared
        standing.append(item)
        kept.append(item)
    for finding in outcome.findings:
        if finding.severity >= Severity.PROBLEM and finding.code != "not_run":
            kept.append({"code": finding.code, "text": finding.text, "argv": outcome.produced.get(id(finding))})
    flagged[:] = kept[-MAX_FLAGGED:]
    return standing


def compose(
    runbook: Runbook, outcome: Outcome, facts: dict[str, Any], *, standing: list[dict[str, Any]], offer: str,
    check: bool,
) -> str:
    """The reply to a diagnosis (``check``: the user asked for a check or audit, so give a verdict)."""
    # Deeper evidence comes later in a diagnosis, so among equals the later finding leads.
    ranked = sorted(enumerate(outcome.findings), key=lambda p: (-p[1].severity, -p[0]))
    ordered = group([f for _, f in ranked if f.code != NO_DATA])
    headline = ordered[0] if ordered and ordered[0].severity >= Severity.PROBLEM else None
    advice: list[str] = []
    for finding in ordered:
        text = runbook.advice.get(finding.code)
        if text:
            filled = complete_text(text, {**facts, **finding.data}, neutral=False)
            if filled and filled not in advice:
                advice.append(filled)
    clean = headline is None and not outcome.gaps and not standing
    return render(
        "replies/diagnosis", title=runbook.title, headline=headline,
        findings=[f for f in ordered if f is not headline], checked=outcome.checked, advice=advice, offer=offer,
        gaps=outcome.gaps, standing=[s["text"] for s in standing], clean=clean, check=check,
        problems=sum(1 for f in ordered if f.severity >= Severity.PROBLEM),
    )


def bearing_on(flagged: list[dict[str, Any]], title: str) -> list[str]:
    """The standing findings that speak of the action ``title`` names by its verb ("Restart nginx"
    -> a finding that says "a reload or restart would fail"): the evidence says what the action
    would do, so the approval request carries it ("would a restart fix it?" is answered)."""
    verb = re.sub(r"(?:ing|ed|s)$", "", next(iter(words(title)), ""))  # "Restarting nginx" -> restart
    if len(verb) < 4:
        return []
    said = re.compile(rf"\b{re.escape(verb)}\w*", re.IGNORECASE)
    return [str(item["text"]) for item in flagged if said.search(str(item.get("text", "")))][:3]


def pick_offer(runbook: Runbook, facts: dict[str, Any]) -> tuple[int, str] | None:
    """The first offer of ``runbook`` whose conditions hold: (its index, its text)."""
    for index, offer in enumerate(runbook.offers):
        if holds(offer.when, facts):
            return index, complete_text(offer.text, facts)
    return None


def from_evidence(question: str, reply: str) -> str:
    """A follow-up whose diagnosis would repeat the previous reply word for word: answer from that
    evidence instead: the main finding, the lines that share words with the question, and the
    next steps (the part a "what do I change?" asks for)."""
    asked = {w for w in words(question) if len(w) > 3}
    lines = [ln.strip() for ln in reply.splitlines() if ln.strip()]
    head = lines[0].strip("*") if lines else ""
    steps_at = next((i for i, ln in enumerate(lines) if ln == "Next steps:"), len(lines))
    found = [ln.lstrip("- ").strip("*") for ln in lines[1:steps_at] if ln.startswith("- ") and not ln.startswith("- `")]
    relevant = [ln for ln in found if asked & set(words(ln))]
    out = [f"From the evidence I already gathered (nothing new ran): {head}"]
    if found:
        # What bears on the question first, then the rest of what was found.
        out += ["", "The evidence:", *(f"- {ln}" for ln in [*relevant, *(f for f in found if f not in relevant)][:10])]
    advice = [ln for ln in lines[steps_at + 1:] if ln.startswith("- ")]
    if advice:
        out += ["", "What to do:", *advice]
    if not found and not advice:
        out += ["", "Nothing I gathered answers that more directly: name what to check (a unit, a pod, a path, "
                "a command) and I will look."]
    return "\n".join(out)
