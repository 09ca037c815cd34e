"""Follow-ups: a question answered by the check that answers it, and "did it work?" re-checked.

A follow-up question is matched against the squad's own vocabulary: each diagnostic tool's
name, description and analyzer, and the ``why`` of the runbook steps that use it. A small
thesaurus folds an engineer's question words onto that vocabulary ("what's using the space?"
-> size, folder; "is the old version still serving?" -> replica, rollout, revision). The best
tools' steps then run (or their outputs are re-read) with the conversation's facts, and the
reply leads with what those checks show.

A message saying the user changed something ("ran userdel, it's gone now. we good?", "did it
work?") re-runs the previous diagnosis with fresh outputs, so evidence can clear what it found
earlier, and the reply says what is still there and what is gone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from squads.brain.actions import CallResult
from squads.brain.extract import STOPWORDS
from squads.brain.intents import words
from squads.brain.models import Facts, Finding, Playbook, Severity, Step
from squads.brain.verdict import NO_DATA, Outcome

# An engineer's question words -> the words tools and steps describe themselves with.
THESAURUS: dict[str, tuple[str, ...]] = {
    "space": ("size", "folder"), "using": ("size", "usage"), "uses": ("size", "usage"), "eating": ("size", "usage"),
    "taking": ("size",), "biggest": ("size",), "largest": ("size",), "filling": ("size", "folder"),
    "version": ("rollout", "revision", "replica"), "versions": ("rollout", "revision", "replica"),
    "old": ("revision", "replica", "history"), "previous": ("revision", "replica", "history"),
    "serving": ("serving", "ready", "replica"), "image": ("rollout", "replica"), "tag": ("rollout", "replica"),
    "errors": ("error", "log"), "error": ("error", "log"), "warnings": ("log",), "messages": ("log",),
    "logged": ("login", "last"), "logins": ("login", "last"), "login": ("login", "last"),
    "port": ("listening", "socket"), "ports": ("listening", "socket"), "listens": ("listening", "socket"),
    "listening": ("listening", "socket"), "ram": ("memory",), "memory": ("memory",), "cpu": ("cpu",),
    "cert": ("certificate",), "certs": ("certificate",), "expire": ("certificate", "expiry"),
    "expires": ("certificate", "expiry"), "connections": ("connection", "session"),
    "sessions": ("session", "connection"), "queries": ("session", "activity", "query"),
    "blocking": ("blocking", "lock"), "blocked": ("blocking", "lock"), "locks": ("lock", "blocking"),
    "accounts": ("account", "passwd"), "users": ("account", "login"), "root": ("account", "uid"),
    "settings": ("setting", "configuration"), "config": ("configuration",), "autoscaler": ("autoscaler",),
    "scaling": ("autoscaler",), "endpoints": ("endpoint",), "dns": ("dns", "coredns"),
    "down": ("status",), "up": ("status",), "dead": ("status",), "alive": ("status",), "stopped": ("status",),
    "crashed": ("status",),
}
# "is the site down now?": a yes/no question about a state, answered in its own word when the
# checks that answer it found nothing wrong.
STATE_QUESTION = re.compile(
    r"\b(?:is|are|was|were)\b(?:\s+\S+){0,4}?\s+(down|dead|broken|failing|crashed|stopped|offline|full)\b",
    re.IGNORECASE,
)
# Words that never decide which check answers: they appear in any question or any description.
NOISE = STOPWORDS | frozenset(
    """what which whats what's is are how many much who where when why does did do there right now still
    any it's the of ok okay so but or u you we i me us them tell show give most each per more less one
    server web squad check checks command output""".split()
)
MAX_ANSWER_TOOLS = 2
MAX_ANSWER_LINES = 10

# A message saying the user changed something, or asking whether it worked: re-check, don't re-read.
CHANGED = re.compile(
    r"\b(?:i|we|i've|we've|ive|just|already|have|has been)\s+(?:\w+\s+)?(?:ran|run|fixed|removed|deleted|"
    r"restarted|reloaded|changed|updated|raised|increased|bumped|lowered|applied|rolled|freed|cleaned|cleared|"
    r"killed|rotated|added|edited|deployed|reverted|locked|disabled|patched|moved|purged|truncated|"
    r"dropped|upgraded|renewed|replaced|reset|resized|grew|extended)\b|^\s*(?:ok|okay|done|so)?[ ,]*"
    r"(?:ran|fixed|removed|deleted|restarted|reloaded|changed|applied|rolled back|freed|cleaned|renewed)\b",
    re.IGNORECASE,
)
AGAIN = re.compile(
    r"\b(?:did (?:it|that|this) (?:work|help|fix)|is it (?:gone|fixed|better|resolved|solved|back)|"
    r"(?:check|look|try|run)\b(?:\s+\S+){0,3}?\s+(?:again|once more)|re-?check|how about now|what about now|and now\?|"
    r"(?:is it|is that|it's|its) still (?:there|broken|failing|happening|down|full)|should be (?:fixed|gone|"
    r"good|ok|okay|better) now)",
    re.IGNORECASE,
)


def is_recheck(text: str) -> bool:
    """Whether the user says they changed something or asks whether the fix worked."""
    return bool(CHANGED.search(text) or AGAIN.search(text))


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def question_terms(question: str) -> set[str]:
    """The question's own content words and the check words the thesaurus folds them onto."""
    said = words(question)
    expanded = {_stem(t) for w in said for t in THESAURUS.get(w, ())}  # "down" is noise, but asks for a status
    return {_stem(w) for w in said if w not in NOISE} | expanded


def _steps_by_tool(playbook: Playbook) -> dict[str, list[Step]]:
    """Every diagnostic step of the squad (runbooks, fallbacks, offers), grouped by tool."""
    out: dict[str, list[Step]] = {}
    for runbook in playbook.runbooks:
        for step in [f for s in [*runbook.steps, *(s for o in runbook.offers for s in o.steps)] for f in s.flat()]:
            out.setdefault(step.tool, []).append(step)
    return out


def answering_tools(question: str, playbook: Playbook, ran: Iterable[str] = ()) -> list[str]:
    """The squad's diagnostic tools whose own words best match the question (at most two, best first).

    A tool scores two per question term in its name, description or analyzer, and one per term
    only in the ``why`` of a step that uses it; below two (a single passing mention), none answers.
    Among equals, the tools that already ran in this diagnosis (``ran``) win: "which errors, how
    many of each?" is about the log already read, not every tool that mentions errors."""
    asked = question_terms(question)
    if not asked:
        return []
    scored: list[tuple[int, str]] = []
    for tool, steps in _steps_by_tool(playbook).items():
        info = playbook.tools.get(tool)
        if info is None or info.changes:
            continue
        own = _terms(" ".join([tool, info.description, playbook.analyzers.get(tool) or ""]))
        why = _terms(" ".join(s.why for s in steps)) - own
        score = 2 * len(asked & own) + len(asked & why)
        if score >= 2:
            scored.append((score, tool))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    top = [tool for score, tool in scored if score == best]
    read = [tool for tool in top if tool in set(ran)]
    return (read or top)[:MAX_ANSWER_TOOLS]


def answering_steps(tools: Iterable[str], playbook: Playbook, facts: Facts) -> list[Step]:
    """The steps that run ``tools`` with the conversation's facts: each way a runbook calls them
    (without its conditions: the question asks for it), and a folder tool on each folder its path
    parameter allows on a file system found full ("what's using the space?" -> ``du`` there)."""
    by_tool = _steps_by_tool(playbook)
    out: list[Step] = []
    for tool in tools:
        seen: set[str] = set()
        for step in by_tool.get(tool, []):
            bare = step.model_copy(update={"when": [], "fallback": []})
            key = repr((bare.with_, bare.foreach, bare.analyze))
            if key not in seen:
                seen.add(key)
                out.append(bare)
        for name, spec in playbook.tools[tool].params.items():
            for folder in _folders_on(spec, facts.get("full_mounts")):
                params = {**_literal_params(by_tool.get(tool, [])), name: folder}
                out.append(Step.model_validate({"tool": tool, "with": params}))
    return out


def _literal_params(steps: list[Step]) -> dict[str, str | int | bool]:
    """Parameters every known call of a tool gives as literals (a line count), for a call built here."""
    first = steps[0].with_ if steps else {}
    return {k: v for k, v in first.items() if not (isinstance(v, str) and "{" in v)
            and all(s.with_.get(k) == v for s in steps)}


def _folders_on(spec: str, mounts: Any) -> list[str]:
    """The folders a ``path:`` parameter allows that lie on one of ``mounts`` (top-level ones only)."""
    if not spec.startswith("path:") or not isinstance(mounts, list):
        return []
    prefixes = [p for p in spec[len("path:"):].split(",") if p.startswith("/")]
    on = [p for p in prefixes if any(p == m or p.startswith(m.rstrip("/") + "/") for m in mounts if isinstance(m, str))]
    return [p for p in on if not any(o != p and p.startswith(o.rstrip("/") + "/") for o in on)]


def answer(question: str, outcome: Outcome, argvs: list[list[str]], reply: str) -> str:
    """The reply to a question answered by checks: what those checks show first, then the diagnosis."""
    mine = [f for f in outcome.findings if outcome.produced.get(id(f)) in argvs and f.code != NO_DATA]
    mine.sort(key=lambda f: (-f.severity, -_size(f)))
    shown = ", ".join(f"`{' '.join(a)}`" for a in argvs[:6]) + (" and more" if len(argvs) > 6 else "")
    lines = [f"To answer \"{question.strip()[:120]}\" I looked at {shown}:"]
    state = STATE_QUESTION.search(question)
    gaps = [g for g in outcome.gaps if any(" ".join(a) in g for a in argvs)]
    if state and argvs and not gaps:
        bad = any(f.severity >= Severity.PROBLEM for f in mine)
        lines[0] += " they show a problem, see below." if bad else f" by these checks it is not {state.group(1).lower()}."
    lines += [f"- {f.text}" for f in mine[:MAX_ANSWER_LINES]] or ["- They show nothing that bears on it."]
    return "\n".join([*lines, "", "Where the diagnosis stands:", "", reply])


SIZE = re.compile(r"\b(\d+(?:\.\d+)?)\s?([KMGTP])i?B?\b")
UNITS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def _size(finding: Finding) -> float:
    """The largest size a finding names ("/var/log holds 31G"), so the biggest folder leads."""
    sizes = [float(n) * 1024 ** UNITS[u] for n, u in SIZE.findall(finding.text)]
    return max(sizes, default=0.0)


def recheck(before: list[dict[str, Any]], outcome: Outcome, reply: str) -> str:
    """The reply to "did it work?": each problem found earlier, still there or gone, then the diagnosis.

    Only the same check, run again now, can clear a problem; one whose check did not run again
    is named as not re-checked, never as gone."""
    ran = [c.argv for c in outcome.checked]
    now = {f.code for f in outcome.findings if f.severity >= Severity.PROBLEM}
    still, gone, unchecked = [], [], []
    for item in before:
        if not item.get("argv") or item["argv"] not in ran:
            unchecked.append(item["text"])
        elif item["code"] in now:
            still.append(item["text"])
        else:
            gone.append(item["text"])
    lines = ["I ran the checks again, with fresh output, after what you said:"]
    lines += [f"- Still there: {t}" for t in still]
    lines += [f"- Gone now (the same check no longer shows it): {t}" for t in gone]
    lines += [f"- Not re-checked (its check did not run again), so it still stands: {t}" for t in unchecked]
    if not before:
        lines.append("- Nothing was flagged before; here is what the checks show now.")
    return "\n".join([*lines, "", reply])


def argvs_of(tools: Iterable[str], done: Iterable[str], results: Mapping[str, CallResult],
             outcome: Outcome) -> list[list[str]]:
    """The commands of ``tools`` a diagnosis ran or re-read (``done`` holds the runner's step keys),
    in the order the reply lists them."""
    wanted = tuple(f"{t}:" for t in tools)
    mine = {tuple(r.argv) for k in done if k.startswith(wanted) and (r := results.get(k.rsplit("|", 1)[0]))}
    return [list(c.argv) for c in outcome.checked if tuple(c.argv) in mine]
