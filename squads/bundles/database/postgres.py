"""Parsers for PostgreSQL tool output: unaligned psql tables, intervals and pg_lsclusters.

Digits are spelled ``[0-9]``: ``\\d`` also matches non-ASCII digits that ``int()`` may reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta

__all__ = ["Cluster", "format_duration", "parse_interval", "parse_lsclusters", "parse_unaligned"]

_FOOTER = re.compile(r"^\([0-9]+ rows?\)$")


AMBIGUOUS = "?ambiguous"  # set on a row whose fields could be read in more than one way


def parse_unaligned(
    text: str,
    sep: str = "|",
    *,
    free_text: Sequence[str] = (),
    checks: Mapping[str, Callable[[str], bool]] | None = None,
) -> list[dict[str, str]]:
    """Rows of ``psql -X -A -F SEP`` output keyed by the header line; fields are stripped.

    psql does not escape a separator inside a value, so a row with too many
    fields is ambiguous. The extra fields go to the ``free_text`` columns (query
    texts), in the arrangement where every column in ``checks`` passes its check
    (pids are numbers, durations are intervals); without ``free_text`` they stay
    in the last column. A row that more than one arrangement fits (or none) gets
    ``AMBIGUOUS``: callers must not act on its values. A line with too few separators continues the
    previous row's last column, because psql prints embedded newlines as they are.
    """
    lines = [line for line in text.splitlines() if line.strip() and not _FOOTER.match(line.strip())]
    if not lines:
        return []
    columns = [name.strip() for name in lines[0].split(sep)]
    rows: list[dict[str, str]] = []
    for line in lines[1:]:
        fields = line.split(sep)
        if len(fields) < len(columns):
            if rows:
                last = columns[-1]
                rows[-1][last] = f"{rows[-1][last]}\n{line.strip()}"
                continue
            fields += [""] * (len(columns) - len(fields))
        rows.append(_arrange(columns, fields, sep, free_text, checks or {}))
    return rows


def _arrange(
    columns: list[str], fields: list[str], sep: str, free_text: Sequence[str],
    checks: Mapping[str, Callable[[str], bool]],
) -> dict[str, str]:
    extra = len(fields) - len(columns)
    flexible = [columns.index(c) for c in free_text if c in columns] or [len(columns) - 1]
    if extra > 12:  # hostile output: do not search, keep the overflow in the last free-text column
        flexible = flexible[-1:]
    fits: list[dict[str, str]] = []
    row: dict[str, str] = {}
    for widths in _spreads(extra, len(flexible)):
        grow = dict(zip(flexible, widths, strict=True))
        row = {}
        pos = 0
        for index, name in enumerate(columns):
            take = 1 + grow.get(index, 0)
            row[name] = sep.join(fields[pos : pos + take]).strip()
            pos += take
        if all(check(row.get(name, "")) for name, check in checks.items()) and row not in fits:
            fits.append(row)
    if len(fits) > 1:
        # A query text can be written to look like the other columns ("/*|777|postgres|idle ...*/");
        # when more than one reading fits, say so rather than pick one.
        return {**fits[0], AMBIGUOUS: "yes"}
    return fits[0] if fits else {**row, AMBIGUOUS: "yes"} if extra else row


def _spreads(total: int, slots: int) -> Iterator[tuple[int, ...]]:
    """Every way to share ``total`` extra fields among ``slots`` columns."""
    if slots == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _spreads(total - first, slots - 1):
            yield (first, *rest)


_INTERVAL = re.compile(
    r"^(?P<units>(?:[+-]?[0-9]+ (?:years?|mons?|days?)\s*)*)"
    r"(?:(?P<sign>[+-])?(?P<hours>[0-9]+):(?P<minutes>[0-9]{2})(?::(?P<seconds>[0-9]{2}(?:\.[0-9]+)?))?)?$"
)
# PostgreSQL's own justify_* conventions: a month is 30 days, a year 12 months.
_UNIT_DAYS = {"year": 360, "mon": 30, "day": 1}


def parse_interval(text: str) -> timedelta | None:
    """Parse a PostgreSQL interval in the default output style; ``None`` for empty or other text."""
    text = text.strip()
    m = _INTERVAL.match(text)
    if not text or not m:
        return None
    days = 0
    for count, unit in re.findall(r"([+-]?[0-9]+) (year|mon|day)", m["units"]):
        days += int(count) * _UNIT_DAYS[unit]
    clock = timedelta()
    try:
        if m["hours"] is not None:
            clock = timedelta(hours=int(m["hours"]), minutes=int(m["minutes"]), seconds=float(m["seconds"] or 0))
            if m["sign"] == "-":
                clock = -clock
        return timedelta(days=days) + clock
    except OverflowError:  # beyond timedelta's +-999999999 days
        return None


def format_duration(delta: timedelta) -> str:
    """Short human duration: "2h 13m 45s", "7m 12s", "45s", "1d 2h"; at most three units, zeros omitted."""
    total = delta.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(total)
    if 0 < total < 1:
        return f"{sign}<1s"
    seconds = int(total)
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    first = next((i for i, (value, _) in enumerate(parts) if value), len(parts) - 1)
    # Three units from the largest is precise enough for an incident note.
    shown = [f"{value}{unit}" for value, unit in parts[first:first + 3] if value]
    return sign + (" ".join(shown) or "0s")


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    status: str
    owner: str
    data_directory: str
    log_file: str


_LSCLUSTERS_HEADERS = ("Ver", "Cluster", "Port", "Status", "Owner", "Data directory", "Log file")


def _cluster(values: list[str]) -> Cluster | None:
    """A cluster from its seven column values, or ``None`` when they do not look right."""
    if len(values) == 6:
        values = [*values, ""]  # no log file when logging goes to syslog/stderr
    if len(values) != 7 or any(" " in value for value in values):
        return None
    version, name, port, status, owner, data_directory, log_file = values
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", version) or not re.fullmatch(r"[0-9]+", port) or not name or not data_directory:
        return None
    return Cluster(version, name, int(port), status, owner, data_directory, log_file)


def parse_lsclusters(text: str) -> list[Cluster]:
    """Parse ``pg_lsclusters``: by the header's column starts, else by whitespace split."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].lstrip().startswith("Ver"):
        return []
    header = lines[0]
    starts = [header.find(name) for name in _LSCLUSTERS_HEADERS]
    by_position = all(s >= 0 for s in starts) and starts == sorted(starts)
    clusters: list[Cluster] = []
    for line in lines[1:]:
        cluster = None
        if by_position:
            bounds = [*starts[1:], len(line)]
            cluster = _cluster([line[a:b].strip() for a, b in zip(starts, bounds, strict=True)])
        # Headers drift from the data when a value is wider than its column.
        cluster = cluster or _cluster(line.split())
        if cluster:
            clusters.append(cluster)
    return clusters
