"""Parsers for kubectl's tables (get, top, events), resource quantities and label selectors.

kubectl's tables come out of a tabwriter. Their layout is not a contract (column widths follow the
data, versions add columns), so tables are cut where their header words start, never at fixed
character positions. kubectl re-exports every public name here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Header cells are separated by 2+ spaces; a single space belongs to the name ("LAST SEEN").
_HEADER_CELL = re.compile(r"\S+(?: \S+)*")
# The dashed rule under describe tables ("----  ------").
_RULE = re.compile(r"^[\s-]+$")
_QUANTITY = re.compile(r"^(?P<num>\d+(?:\.\d*)?|\.\d+)(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkKMGTPE]))?$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10**3), "K": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


@dataclass(frozen=True)
class Event:
    """One Kubernetes event, from `kubectl get events` or a describe Events table."""
    type: str
    reason: str
    age: str
    source: str
    message: str
    object: str = ""


def _cut_row(line: str, starts: list[int]) -> list[str]:
    """Split one table row at the column starts, moving a cut off any word it would split."""
    cuts = [0]
    pushed = False  # the previous cut had to move right, so later cells are shifted too
    for start in starts[1:]:
        prev = cuts[-1]
        pos = max(start, prev)
        moved = False
        if 0 < pos < len(line) and not line[pos - 1].isspace() and not line[pos].isspace():
            left = pos
            while left > prev and not line[left - 1].isspace():
                left -= 1
            right = pos
            while right < len(line) and not line[right].isspace():
                right += 1
            before = line[prev:left]
            # A word straddling the column start is this column's value started early when a
            # column gap (2+ spaces, which values never contain) or proximity says so; it is the
            # previous cell's overflowing value when that cell would otherwise be empty.
            if before.strip() and (len(before) - len(before.rstrip()) >= 2 or pos - left < right - pos):
                pos = left
            else:
                pos, moved = right, True
        elif pushed and not line[prev:pos].strip():
            # The previous cell was shoved right by an overflow; its value is the next word,
            # even if that word happens to start exactly under this column's header.
            end = len(line) - len(line[prev:].lstrip())
            while end < len(line) and not line[end].isspace():
                end += 1
            if end > pos:
                pos, moved = end, True
        cuts.append(pos)
        pushed = moved
    bounds = cuts + [len(line)]
    return [line[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]


def parse_table(text: str) -> list[dict[str, str]]:
    """Parse a kubectl table (`get`, `top`, `get events`) into one dict per row.

    Keys are the header names as printed (``NAME``, ``PORT(S)``, ``LAST SEEN``);
    the last column keeps the rest of the line. Blank lines and dashed rules are
    skipped; "No resources found ..." gives ``[]``.
    """
    lines = [ln.expandtabs().rstrip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].lstrip().startswith("No resources found"):
        return []
    header = [(m.group(), m.start()) for m in _HEADER_CELL.finditer(lines[0])]
    names = [name for name, _ in header]
    starts = [start for _, start in header]
    rows = []
    for line in lines[1:]:
        if _RULE.match(line):
            continue
        rows.append(dict(zip(names, _cut_row(line, starts), strict=True)))
    return rows


def _int(text: str, default: int = 0) -> int:
    match = re.match(r"\s*(-?\d+)", text)
    return int(match.group(1)) if match else default


def _percent(text: str) -> int | None:
    match = re.search(r"(\d+)%", text)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class PodRow:
    """A row of `kubectl get pods`."""
    name: str
    ready: int
    total: int
    status: str
    restarts: int
    last_restart: str
    age: str
    namespace: str = ""


def parse_pods(text: str) -> list[PodRow]:
    """Parse `kubectl get pods` (plain, ``-A`` or ``-o wide``); "12 (2m ago)" restarts split in two."""
    pods = []
    for row in parse_table(text):
        ready, _, total = row.get("READY", "").partition("/")
        restarts = re.match(r"(\d+)(?:\s*\((.*)\))?", row.get("RESTARTS", ""))
        count, last = (int(restarts.group(1)), (restarts.group(2) or "").strip()) if restarts else (0, "")
        pods.append(PodRow(row.get("NAME", ""), _int(ready), _int(total), row.get("STATUS", ""), count, last,
                           row.get("AGE", ""), row.get("NAMESPACE", "")))
    return pods


@dataclass(frozen=True)
class ServiceRow:
    """A row of `kubectl get services`; ports are (port, protocol), node ports dropped."""
    name: str
    type: str
    cluster_ip: str
    external_ip: str
    ports: list[tuple[int, str]]


def parse_services(text: str) -> list[ServiceRow]:
    """Parse `kubectl get services`; "80:30080/TCP" gives (80, "TCP")."""
    services = []
    for row in parse_table(text):
        # The node port (":30080") is how NodePort services are reached, not what they serve.
        ports = [(int(m.group(1)), m.group(2) or "TCP") for item in row.get("PORT(S)", "").split(",")
                 if (m := re.match(r"\s*(\d+)(?::\d+)?(?:/(\w+))?\s*$", item))]
        services.append(ServiceRow(row.get("NAME", ""), row.get("TYPE", ""), row.get("CLUSTER-IP", ""),
                                   row.get("EXTERNAL-IP", ""), ports))
    return services


def _quantity(value: str) -> Decimal | None:
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    try:
        number = Decimal(match.group("num"))
        if match.group("exp"):
            number = number.scaleb(int(match.group("exp")[1:]))
    except (InvalidOperation, ValueError):
        return None
    return number * _SUFFIX[match.group("suffix") or ""]


def cpu_millicores(value: str) -> int | None:
    """A CPU quantity in millicores: "3840m" -> 3840, "2" -> 2000, "0.5" -> 500; junk -> None."""
    cores = _quantity(value)
    # Kubernetes rounds sub-millicore amounts up, so a tiny request is never 0.
    return None if cores is None else math.ceil(cores * 1000)


def memory_bytes(value: str) -> int | None:
    """A memory quantity in bytes: "4Gi", "1500M", "123456", "1e3"; junk -> None."""
    amount = _quantity(value)
    return None if amount is None else math.ceil(amount)


@dataclass(frozen=True)
class Usage:
    """One row of `kubectl top nodes|pods`; percentages exist only for nodes."""
    name: str
    cpu_m: int | None
    cpu_percent: int | None
    memory_bytes: int | None
    memory_percent: int | None
    namespace: str = ""


def _column(row: dict[str, str], *names: str) -> str:
    # Header spellings moved between kubectl releases ("CPU%" became "CPU(%)").
    return next((row[name] for name in names if name in row), "")


def parse_top(text: str) -> list[Usage]:
    """Parse `kubectl top nodes` or `kubectl top pods` (with or without NAMESPACE)."""
    return [
        Usage(row.get("NAME", ""), cpu_millicores(_column(row, "CPU(cores)", "CPU")), _percent(_column(row, "CPU%", "CPU(%)")),
              memory_bytes(_column(row, "MEMORY(bytes)", "MEMORY")), _percent(_column(row, "MEMORY%", "MEMORY(%)")),
              row.get("NAMESPACE", ""))
        for row in parse_table(text)
    ]


def parse_events(text: str) -> list[Event]:
    """Parse `kubectl get events` (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; SOURCE with -o wide)."""
    return [
        Event(r.get("TYPE", ""), r.get("REASON", ""), r.get("LAST SEEN", ""), r.get("SOURCE", ""),
              r.get("MESSAGE", ""), r.get("OBJECT", ""))
        for r in parse_table(text)
    ]


def parse_selector(text: str) -> dict[str, str]:
    """Parse "app=postgres,tier=db" (or whitespace-separated labels) into a dict; "<none>" -> {}."""
    pairs = {}
    for item in re.split(r"[,\s]+", text.strip()):
        key, sep, value = item.partition("=")
        # Set-based terms ("env in (a,b)") and negations are not equality labels.
        if sep and key and not key.endswith("!"):
            pairs[key] = value.lstrip("=")
    return pairs
