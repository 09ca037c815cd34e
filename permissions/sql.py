"""The SQL whitelist for psql: whole-statement matches, integer holes only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from squads.settings.yaml_loader import safe_load

_WS = re.compile(r" +")
_HOLE = re.compile(r"\{([a-z_]+):int\}")
_COPY_PROGRAM = re.compile(r"\bcopy\b.*\bprogram\b", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Statement:
    """One whitelisted statement compiled to a full-match regex."""

    name: str
    text: str
    pattern: re.Pattern[str]
    holes: tuple[str, ...]

    def render(self, values: dict[str, int]) -> str:
        """Fill the integer holes; anything but an int is refused."""
        out = self.text
        for hole in self.holes:
            value = values.get(hole)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SQL statement {self.name} needs a whole number for {hole}, got {value!r}")
            out = out.replace("{" + hole + ":int}", str(value))
        return out


def normalise(sql_text: str) -> str:
    """Collapse ASCII spaces outside string literals; drop one trailing ';'.

    Only ' ' is collapsed: PostgreSQL does not treat other Unicode spaces as
    white space, and literals must stay byte-for-byte what was whitelisted.
    """
    parts = sql_text.split("'")
    text = "'".join(_WS.sub(" ", p) if i % 2 == 0 else p for i, p in enumerate(parts)).strip(" ")
    if text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def _compile(name: str, text: str) -> Statement:
    text = normalise(text)
    holes = tuple(_HOLE.findall(text))
    parts = _HOLE.split(text)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else r"([1-9][0-9]{0,9})" for i, part in enumerate(parts)
    )
    return Statement(name=name, text=text, pattern=re.compile(regex), holes=holes)


@lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, Statement], dict[str, tuple[str, ...]]]:
    data = safe_load((Path(__file__).with_name("sql.yaml")).read_text())
    statements = {name: _compile(name, text) for name, text in data["statements"].items()}
    groups = {name: tuple(members) for name, members in data.get("groups", {}).items()}
    for group, members in groups.items():
        unknown = [m for m in members if m not in statements]
        if unknown:
            raise ValueError(f"sql.yaml group {group} names unknown statements: {unknown}")
    return statements, groups


def statements() -> dict[str, Statement]:
    """Every whitelisted statement by name."""
    return _catalogue()[0]


def resolve_group(name: str) -> tuple[str, ...]:
    """Statement names of a group, or the single statement ``name``."""
    stmts, groups = _catalogue()
    if name in groups:
        return groups[name]
    if name in stmts:
        return (name,)
    raise ValueError(f"unknown SQL statement or group {name!r}; known: {', '.join([*groups, *stmts])}")


def match(sql_text: str, names: tuple[str, ...] | None = None) -> str | None:
    """The name of the whitelisted statement ``sql_text`` is, or None."""
    if not sql_text.isascii():
        return None
    text = normalise(sql_text)
    stmts = statements()
    for name in names if names is not None else tuple(stmts):
        if stmts[name].pattern.fullmatch(text):
            return name
    return None


def why_refused(sql_text: str) -> str:
    """A sentence on why ``sql_text`` is not allowed, naming the worst problem."""
    if "\\" in sql_text:
        return "psql backslash meta-commands (\\!, \\copy, \\o, ...) are never allowed: they run shell commands or touch files"
    if _COPY_PROGRAM.search(sql_text):
        return "COPY ... PROGRAM is never allowed: it runs a shell command on the database server"
    if ";" in normalise(sql_text):
        return "only one whitelisted SQL statement may run; ';' chains are refused"
    return "this SQL is not one of the whitelisted diagnostic statements (see permissions/sql.yaml)"
