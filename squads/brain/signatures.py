"""The error-signature catalogue: known log lines as data, and the matcher the log analyzers share.

Each squad's catalogue is its bundle's ``signatures/*.yaml`` plus the shared entries of
``squads/brain/signatures/*.yaml`` (systemd, the kernel). An entry names a program, a Python
regular expression searched in one log line (its named groups fill ``{placeholders}``), a
severity, what the line means, the likely causes, the squad's tools to run next and the fix.
Entries are validated when the bundle loads (``load_catalogue``): unique ids, patterns that
compile, placeholders that are named groups, ``next_checks`` that are tools of the squad, and
examples that match their own pattern; a broken entry names its file and its id.

``match_log`` reads a command's output line by line, matches each against the catalogue, groups
repeats ("12 × ..."), ranks the groups by severity then recency, and keeps the error lines that
match nothing as "unrecognised error": no error line is ever silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]  # the literal runs of a pattern
from typing import Any

import yaml

from squads.brain.models import Finding, Severity

SHARED_DIR = Path(__file__).with_name("signatures")
BUNDLES_DIR = Path(__file__).parent.parent / "bundles"
# syslog's numbering: the lower, the worse.
LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4, "notice": 5}
FIELDS = {"id", "program", "pattern", "severity", "meaning", "causes", "next_checks", "fix", "examples"}
ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")  # {name}; {{ and }} are literal braces
MISSING = "(not named in the log)"  # an optional group that did not match
MAX_LINES = 5000  # lines read from the end of an output; older ones cannot be the decisive line
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the catalogue is large
MAX_VALUE = 200  # a value quoted from a log line into a reply


class SignatureError(ValueError):
    """A catalogue file is broken; the message names the file and the entry."""


@dataclass(frozen=True)
class Signature:
    """One known error line: how to recognise it and what to say and do about it."""

    id: str
    program: str
    pattern: re.Pattern[str]
    severity: str
    meaning: str
    causes: tuple[str, ...]
    next_checks: tuple[str, ...]
    fix: str
    examples: tuple[str, ...]
    source: Path
    anchors: tuple[str, ...] = ()  # a matching line contains one of these: a cheap test before the regex

    @property
    def catch_all(self) -> bool:
        return self.id.endswith("-other")

    @property
    def rank(self) -> int:
        return LEVELS[self.severity]

    def render(self, text: str, groups: Mapping[str, str | None]) -> str:
        """``text`` with ``{name}`` filled from the match; a group that did not match reads neutrally."""

        def value(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return m.group(0)[0]
            found = groups.get(m.group(1))
            if not found:
                return MISSING
            return found if len(found) <= MAX_VALUE else found[:MAX_VALUE] + "…"

        return PLACEHOLDER.sub(value, text)


def _runs(items: Any) -> str:
    """The longest run of literal characters in a parsed sequence."""
    best, run = "", ""
    for op, av in items:
        if op is sre_parse.LITERAL:
            run += chr(av)
            continue
        best, run = max(best, run, key=len), ""
    return max(best, run, key=len)


def _anchors(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Literals a matching line must contain one of: the longest literal run of the top level, or,
    for a pattern that is one alternation, one run per branch. Empty when there is none to rely on."""
    if pattern.flags & re.IGNORECASE:
        return ()
    parsed = list(sre_parse.parse(pattern.pattern))
    top = _runs(parsed)
    if len(top) >= 3:
        return (top,)
    if len(parsed) >= 1 and parsed[0][0] is sre_parse.SUBPATTERN:
        body = list(parsed[0][1][-1])
        if len(body) == 1 and body[0][0] is sre_parse.BRANCH:
            runs = tuple(_runs(branch) for branch in body[0][1][1])
            if all(len(r) >= 3 for r in runs):
                return runs
    return ()


def _entry(path: Path, index: int, raw: Any, tools: frozenset[str] | None) -> Signature:
    """One validated entry; ``tools`` None means a shared file (its unknown next checks are skipped)."""
    name = raw.get("id") if isinstance(raw, dict) else None
    where = f"{path}: signature {name}" if isinstance(name, str) and name else f"{path}: entry {index}"

    def fail(problem: str) -> SignatureError:
        return SignatureError(f"{where}: {problem}")

    if not isinstance(raw, dict):
        raise fail("expected a mapping with " + ", ".join(sorted(FIELDS)))
    if unknown := set(raw) - FIELDS:
        raise fail(f"unknown field(s) {sorted(unknown)}; expected {sorted(FIELDS)}")
    if missing := {"id", "program", "pattern", "severity", "meaning", "fix", "examples"} - set(raw):
        raise fail(f"missing field(s) {sorted(missing)}")
    for key in ("id", "program", "pattern", "severity", "meaning", "fix"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise fail(f"{key} must be a non-empty string")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("causes", "next_checks", "examples"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise fail(f"{key} must be a list of non-empty strings")
        lists[key] = tuple(value)
    if not ID.match(raw["id"]):
        raise fail("id must be kebab-case (lower-case letters, digits and single dashes)")
    if raw["severity"] not in LEVELS:
        raise fail(f"severity {raw['severity']!r} is not one of {', '.join(LEVELS)}")
    try:
        pattern = re.compile(raw["pattern"])
    except re.error as exc:
        raise fail(f"pattern does not compile: {exc}") from None
    if pattern.search(""):
        raise fail("pattern matches an empty line, so it would match every line")
    for key in ("meaning", "fix"):
        for token in PLACEHOLDER.finditer(raw[key]):
            placeholder = token.group(1)
            if placeholder is not None and placeholder not in pattern.groupindex:
                known = ", ".join(sorted(pattern.groupindex)) or "none"
                raise fail(f"{key} uses {{{placeholder}}}, which is not a named group of the pattern (named groups: {known})")
    if not lists["examples"]:
        raise fail("examples must list at least one real log line")
    for example in lists["examples"]:
        if not pattern.search(example):
            raise fail(f"example does not match the pattern: {example!r}")
    checks = lists["next_checks"]
    if tools is not None:
        for check in checks:
            if check not in tools:
                raise fail(f"next_checks names {check!r}, which is not a tool of this squad (tools: {', '.join(sorted(tools))})")
    return Signature(
        id=raw["id"], program=raw["program"], pattern=pattern, severity=raw["severity"], meaning=raw["meaning"].strip(),
        causes=lists["causes"], next_checks=checks, fix=raw["fix"].strip(), examples=lists["examples"], source=path,
        anchors=_anchors(pattern),
    )


def read_file(path: Path, tools: frozenset[str] | None) -> list[Signature]:
    """The validated entries of one catalogue file (parsed, compiled and checked once per process
    for each version of the file: every bundle load and every squad sharing a file reuses them)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read it: {exc}") from None
    return list(_read_file(path, stamp, tools))


@lru_cache(maxsize=256)
def _read_file(path: Path, stamp: int, tools: frozenset[str] | None) -> tuple[Signature, ...]:
    del stamp  # part of the cache key only: an edited file is read again
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER) or {}  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise SignatureError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"signatures"} or not isinstance(data["signatures"], list):
        raise SignatureError(f"{path}: expected one top-level key 'signatures' holding a list of entries")
    return tuple(_entry(path, index, raw, tools) for index, raw in enumerate(data["signatures"], start=1))


@dataclass(frozen=True)
class Catalogue:
    """The signatures one squad knows, in file order."""

    signatures: tuple[Signature, ...]

    def match(self, line: str) -> tuple[Signature, re.Match[str]] | None:
        """The first signature that matches ``line``; a catch-all (an id ending in ``-other``) only
        when no other entry does, so a specific entry wins whatever file it is in."""
        fallback: tuple[Signature, re.Match[str]] | None = None
        for signature in self.signatures:
            if signature.anchors and not any(a in line for a in signature.anchors):
                continue
            if fallback and signature.catch_all:
                continue
            found = signature.pattern.search(line)
            if found:
                if not signature.catch_all:
                    return signature, found
                fallback = (signature, found)
        return fallback


def load_catalogue(folder: Path | None, *, tools: Iterable[str], shared: Path = SHARED_DIR) -> Catalogue:
    """The shared entries then those of ``folder/signatures/*.yaml``, validated against the squad's ``tools``.

    A shared entry's next checks that are not tools of this squad are dropped for it."""
    known = frozenset(tools)
    entries: list[Signature] = []
    for path in sorted(shared.glob("*.yaml")) if shared.is_dir() else []:
        for s in read_file(path, None):
            entries.append(Signature(**{**s.__dict__, "next_checks": tuple(c for c in s.next_checks if c in known)}))
    own = folder / "signatures" if folder else None
    for path in sorted(own.glob("*.yaml")) if own and own.is_dir() else []:
        entries.extend(read_file(path, known))
    seen: dict[str, Path] = {}
    for s in entries:
        if s.id in seen:
            raise SignatureError(f"{s.source}: signature {s.id}: the id is already used in {seen[s.id]}")
        seen[s.id] = s.source
    return Catalogue(tuple(entries))


_CATALOGUES: dict[str, Catalogue] = {}


def register(squad: str, catalogue: Catalogue) -> None:
    """Make ``catalogue`` the one ``match_log(..., squad=squad)`` uses (done when the bundle loads)."""
    _CATALOGUES[squad] = catalogue


@lru_cache(maxsize=None)
def _builtin(squad: str) -> Catalogue:
    # An analyzer run outside a loaded bundle (a unit test): the shipped squad's catalogue, unchecked tools.
    folder = BUNDLES_DIR / squad
    own = folder / "signatures"
    tools = {c for p in (own.glob("*.yaml") if own.is_dir() else []) for s in read_file(p, None) for c in s.next_checks}
    return load_catalogue(folder if folder.is_dir() else None, tools=tools)


def catalogue(squad: str) -> Catalogue:
    """The catalogue of ``squad``: the one registered at load, else the shipped one."""
    return _CATALOGUES.get(squad) or _builtin(squad)


# --- reading a log ---------------------------------------------------------------------

_LEVEL_WORDS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warn": 4, "warning": 4, "notice": 5,
                "info": 6, "debug": 7, "panic": 0, "fatal": 2, "log": 6}
_LINE_LEVEL = re.compile(
    r"\[(?:[\w.-]*:)?(?P<bracket>emerg|alert|crit|error|warn|notice|info|debug)\]"  # nginx, Apache
    r"|\] (?P<fpm>ALERT|ERROR|WARNING|NOTICE|DEBUG): "  # PHP-FPM
    r"|\b(?P<pg>PANIC|FATAL|ERROR|WARNING|LOG|NOTICE):  "  # PostgreSQL
    r"|^(?P<klog>[EWIF])[0-9]{4} [0-9]{2}:"  # klog (kubelet): E1126 03:12:44
    r"|\blevel=(?P<kv>[a-z]+)"
)
_KLOG = {"E": 3, "W": 4, "I": 6, "F": 2}
_ERRORISH = re.compile(r"\b(?:error|errors|failed|failure|fatal|panic|denied|refused|segfault|cannot|can't|unable)\b", re.I)
_NO_DATA = re.compile(r"^(?:-- No entries --|No journal files were found\.?|-- Logs begin at .*|-- Journal begins at .*"
                      r"|tail: cannot open .*|.*: No such file or directory)$")


def line_level(line: str) -> int | None:
    """The syslog severity a log line declares (nginx, Apache, PHP-FPM, PostgreSQL, klog, level=),
    3 for an undeclared line that reads like an error, else None."""
    m = _LINE_LEVEL.search(line)
    if m:
        if m["klog"]:
            return _KLOG[m["klog"]]
        word = (m["bracket"] or m["fpm"] or m["pg"] or m["kv"] or "").lower()
        if word in _LEVEL_WORDS:
            return _LEVEL_WORDS[word]
    return 3 if _ERRORISH.search(line) else None


def _shape(line: str) -> str:
    """What repeats of one unrecognised error share: the message without times, numbers and request context."""
    text = re.split(r", client: |\[client [^\]]*\]", line, maxsplit=1)[0]
    return re.sub(r"[0-9]+", "N", re.sub(r"^\S+ \S+ (?:\S+ )?", "", text)).strip()


@dataclass
class LogMatch:
    """One signature seen in a log: its last (decisive) line verbatim and how many lines matched."""

    signature: Signature
    line: str
    groups: dict[str, str | None]
    count: int
    last: int  # index of the last matching line: the higher, the more recent

    @property
    def meaning(self) -> str:
        return self.signature.render(self.signature.meaning, self.groups)

    @property
    def fix(self) -> str:
        return self.signature.render(self.signature.fix, self.groups)


@dataclass
class Unrecognised:
    """Error lines that match no signature, grouped by their shape."""

    line: str
    count: int
    level: int
    last: int


@dataclass
class LogReport:
    """What ``match_log`` made of one output: matches ranked, unrecognised errors, and whether there was anything."""

    lines: int
    matches: list[LogMatch] = field(default_factory=list)
    unrecognised: list[Unrecognised] = field(default_factory=list)

    @property
    def decisive(self) -> LogMatch | None:
        """The most severe, then most recent, known error: the one a reply leads with."""
        return self.matches[0] if self.matches else None

    @property
    def empty(self) -> bool:
        """Nothing to judge: no line at all, or only journal markers ("-- No entries --")."""
        return self.lines == 0

    def next_checks(self) -> list[str]:
        """The tools the matched signatures ask for, the decisive one's first, without repeats."""
        out: list[str] = []
        for m in self.matches:
            out.extend(c for c in m.signature.next_checks if c not in out)
        return out


def _ranked(matches: Iterable[LogMatch]) -> list[LogMatch]:
    return sorted(matches, key=lambda m: (m.signature.rank, -m.last))


def match_log(text: str, *, squad: str, known: Catalogue | None = None) -> LogReport:
    """Read ``text`` (a log's tail, a journal, a status output) against ``squad``'s catalogue.

    Every line is tried, the last ``MAX_LINES`` at most; a line that matches a signature counts for
    it (the most recent such line is quoted), an error line that matches none is kept as unrecognised."""
    table = known or catalogue(squad)
    raw = text.splitlines()[-MAX_LINES:]
    lines = [ln.strip() for ln in raw if ln.strip() and not _NO_DATA.match(ln.strip())]
    report = LogReport(lines=len(lines))
    by_id: dict[str, LogMatch] = {}
    odd: dict[str, Unrecognised] = {}
    for index, line in enumerate(lines):
        hit = table.match(line)
        if hit:
            signature, found = hit
            current = by_id.get(signature.id)
            count = current.count + 1 if current else 1
            by_id[signature.id] = LogMatch(signature, line, found.groupdict(), count, index)
            continue
        level = line_level(line)
        if level is None or level > LEVELS["error"]:
            continue
        shape = _shape(line)
        previous = odd.get(shape)
        odd[shape] = Unrecognised(line, (previous.count if previous else 0) + 1, level, index)
    report.matches = _ranked(by_id.values())
    report.unrecognised = sorted(odd.values(), key=lambda u: (u.level, -u.last))
    return report


# --- findings --------------------------------------------------------------------------

FACTS = ("log_signatures", "next_checks")  # what ``log_findings`` may set: declare them in the analyzer
CODES = ("log_signature", "log_unrecognised")  # and the codes of its findings
SHOWN = 4  # known errors beyond the decisive one that get a line of their own


def _severity(signature: Signature) -> Severity:
    if signature.rank <= LEVELS["crit"]:
        return Severity.CAUSE
    return Severity.PROBLEM if signature.rank <= LEVELS["warning"] else Severity.INFO


def _times(count: int) -> str:
    return f"{count} × " if count > 1 else ""


def log_findings(report: LogReport, *, source: str = "The log") -> tuple[dict[str, Any], list[Finding]]:
    """Facts and findings for a ``LogReport``: the decisive line quoted with its meaning, causes and
    fix, the other known errors with their counts, and the unrecognised error lines."""
    facts: dict[str, Any] = {}
    findings: list[Finding] = []
    if report.matches:
        facts["log_signatures"] = [m.signature.id for m in report.matches]
        if checks := report.next_checks():
            facts["next_checks"] = checks
    # Routine lines (notice) are recognised but not reported. The text depends on the match alone, not
    # on which output it came from, so the same line read twice (status, then journal) is one finding.
    shown = [m for m in report.matches if m.signature.rank <= LEVELS["warning"]][: SHOWN + 1]
    for m in shown:
        s = m.signature
        # rank and next_checks: the engine runs the next checks of the reported signatures, worst first.
        data = {"signature": s.id, "line": m.line, "count": m.count, "fix": m.fix, "program": s.program,
                "rank": s.rank, "next_checks": list(s.next_checks)}
        if s.rank <= LEVELS["error"] or m is report.decisive:
            # Causes may name groups too ({user}, {port}): rendered like the meaning, never as a raw placeholder.
            causes = f" Likely causes: {'; '.join(s.render(c, m.groups) for c in s.causes)}." if s.causes else ""
            text = f"{_times(m.count)}\"{m.line}\" ({s.severity}): {m.meaning}{causes} Fix: {m.fix}"
        else:
            text = f"{_times(m.count)}\"{m.line}\" ({s.severity}): {m.meaning}"
        findings.append(Finding("log_signature", _severity(s), text, data))
    if report.unrecognised:
        quoted = "; ".join(f"{_times(u.count)}\"{u.line[:300]}\"" for u in report.unrecognised[:3])
        more = len(report.unrecognised) - 3
        tail = f" and {more} other kind{'s' if more > 1 else ''}" if more > 0 else ""
        known_error = any(m.signature.rank <= LEVELS["error"] for m in report.matches)
        findings.append(Finding(
            "log_unrecognised", Severity.INFO if known_error else Severity.PROBLEM,
            f"{source} has error lines I do not recognise (unrecognised error): {quoted}{tail}. Read them in full.",
            {"count": sum(u.count for u in report.unrecognised)},
        ))
    return facts, findings
