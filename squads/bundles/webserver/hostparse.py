"""Parsers for the host-level outputs the webserver squad reads: free, namei, the kernel's OOM
lines, PHP-FPM's log and access logs. Each reads the program's real format by its header or by the
line's shape, never by fixed character positions."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Memory:
    """``free -m``: MiB."""

    total: int
    used: int
    available: int
    swap_total: int
    swap_used: int


def parse_free(text: str) -> Memory | None:
    """The Mem: and Swap: rows of ``free -m`` (columns by the header)."""
    header: list[str] = []
    rows: dict[str, list[int]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.split()[0] == "total":
            header = line.split()
            continue
        label, _, rest = line.partition(":")
        try:
            rows[label.strip().lower()] = [int(v) for v in rest.split()]
        except ValueError:
            continue
    mem = rows.get("mem")
    if not mem:
        return None
    col = {name: i for i, name in enumerate(header)} if header else {"total": 0, "used": 1, "available": 5}

    def at(name: str, values: list[int], default: int = 0) -> int:
        index = col.get(name)
        return values[index] if index is not None and index < len(values) else default

    swap = rows.get("swap", [0, 0, 0])
    return Memory(total=at("total", mem), used=at("used", mem), available=at("available", mem, at("free", mem)),
                  swap_total=swap[0] if swap else 0, swap_used=swap[1] if len(swap) > 1 else 0)


@dataclass(frozen=True)
class PathEntry:
    """One line of ``namei -l``: mode, owner, group and the component's name."""

    mode: str
    owner: str
    group: str
    name: str


def parse_namei(text: str) -> tuple[str, list[PathEntry]]:
    """``namei -l PATH``: the path asked for and its components, root first."""
    target = ""
    entries: list[PathEntry] = []
    for line in text.splitlines():
        if line.startswith("f:"):
            target = line[2:].strip()
            continue
        parts = line.split(None, 3)
        if len(parts) == 4 and re.fullmatch(r"[-dlcbsp][rwxsStT-]{9}[.+]?", parts[0]):
            entries.append(PathEntry(mode=parts[0], owner=parts[1], group=parts[2], name=parts[3]))
    return target, entries


OOM_KILLED = re.compile(r"(?:Out of memory|Memory cgroup out of memory): Killed process (\d+) \(([^)]+)\)")


def oom_kills(text: str) -> list[tuple[str, str, str]]:
    """(pid, process name, the line) for every OOM-killer kill in kernel messages."""
    return [(m.group(1), m.group(2), line.strip()) for line in text.splitlines() if (m := OOM_KILLED.search(line))]


FPM_LINE = re.compile(r"\[(?P<time>\d{1,2}-\w{3}-\d{4} [\d:.]+)\]\s+(?P<level>[A-Z]+):\s+(?P<message>.*)$")
FPM_CONFIG = re.compile(r"\[(?P<file>/[^\]:]+):(?P<line>\d+)\]\s+(?P<error>.+)")
FPM_MAX_CHILDREN = re.compile(r"\[pool (?P<pool>[^\]]+)\] server reached (?:pm\.)?max_children setting \((?P<max>\d+)\)")
FPM_SIGNAL = re.compile(r"\[pool (?P<pool>[^\]]+)\] child \d+ exited on signal (?P<signal>\d+) \((?P<name>SIG\w+)\)")


@dataclass(frozen=True)
class FpmLine:
    """One PHP-FPM log line (a journal prefix, when there is one, is skipped)."""

    time: str
    level: str
    message: str
    raw: str


def parse_fpm_log(text: str) -> list[FpmLine]:
    """PHP-FPM's own log lines: ``[07-Dec-2026 11:32:40] ERROR: ...``, also inside journal lines."""
    out: list[FpmLine] = []
    for line in text.splitlines():
        found = FPM_LINE.search(line.strip())
        if found and found.group("level") in ("ALERT", "ERROR", "WARNING", "NOTICE", "DEBUG"):
            out.append(FpmLine(found.group("time"), found.group("level"), found.group("message"), line.strip()))
    return out


ACCESS = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)[^"]*" (?P<status>\d{3}) (?P<size>\d+|-)'
)


@dataclass(frozen=True)
class Request:
    """One access-log request (common or combined format)."""

    client: str
    path: str
    status: int


def parse_access_log(text: str) -> list[Request]:
    """Requests of a common/combined-format access log; other lines are skipped."""
    out: list[Request] = []
    for line in text.splitlines():
        found = ACCESS.match(line.strip())
        if found:
            out.append(Request(found.group("client"), found.group("path").split("?")[0], int(found.group("status"))))
    return out
