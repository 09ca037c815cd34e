"""Typed value validators shared by tool parameters and rule placeholders.

One registry serves both, so that a value a tool accepts for a parameter and a
value a grant's ``{type}`` placeholder accepts can never drift apart. Every
validator refuses values that begin with ``-`` (they would be read as options)
and anything outside printable ASCII unless it says otherwise.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from permissions import sql

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_UNIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.@\\-]{0,254}")
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,254}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
_TIME = re.compile(r"[0-9A-Za-z][0-9A-Za-z :.+-]{0,63}")
# No spaces, quotes, globs or shell punctuation: such names are never what a
# diagnostic means, and refusing them keeps every path unambiguous to read.
_PATH_CHARS = re.compile(r"[A-Za-z0-9._@+,:=/-]+")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}")


class ValueRejected(ValueError):
    """A value failed its validator; the message says what is allowed."""


@dataclass(frozen=True, slots=True)
class Validator:
    """A named check; ``describe`` is what an error message shows as allowed."""

    name: str
    describe: str
    check: Callable[[str], bool]

    def __call__(self, value: str) -> bool:
        return self.check(value)

    def validate(self, value: str, *, what: str = "value") -> str:
        """Return ``value`` or raise ``ValueRejected`` naming what was wrong."""
        if not isinstance(value, str):
            raise ValueRejected(f"{what}: expected text, got {type(value).__name__}; allowed: {self.describe}")
        if not self.check(value):
            raise ValueRejected(f"{what}: {value!r} is not allowed; allowed: {self.describe}")
        return value


def _full(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: pattern.fullmatch(v) is not None


def k8s_selector_ok(value: str) -> bool:
    """``key=value,key2!=value2,key3`` with Kubernetes key and value syntax."""
    if not value or len(value) > 1024:
        return False
    for term in value.split(","):
        key, sep, val = term.partition("!=") if "!=" in term else term.partition("=")
        if sep == "=" and val.startswith("="):  # key==value
            val = val[1:]
        if not _LABEL_KEY.fullmatch(key) or (sep and not _LABEL_VALUE.fullmatch(val)):
            return False
    return True


def int_range(low: int, high: int) -> Validator:
    """Decimal integers in ``[low, high]`` without signs or leading zeros."""

    def check(v: str) -> bool:
        if not v.isascii() or not v.isdigit() or (len(v) > 1 and v[0] == "0") or len(v) > 18:
            return False
        return low <= int(v) <= high

    return Validator(f"int:{low}..{high}", f"a whole number from {low} to {high}", check)


def normalise_path(value: str) -> str | None:
    """The absolute, ``..``-free form of ``value``, or None if it is not one.

    Only letters, digits and ``._@+,:=/-`` are accepted.

    ``..`` segments are refused rather than resolved: a caller who means a
    path can name it directly, and refusing avoids any doubt about what the
    node would resolve.
    """
    if not value.startswith("/") or not _PATH_CHARS.fullmatch(value):
        return None
    parts = value.split("/")
    if any(p == ".." for p in parts):
        return None
    norm = posixpath.normpath(value)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def under_prefixes(path: str, prefixes: tuple[str, ...]) -> bool:
    """True when normalised ``path`` is one of ``prefixes`` or inside one."""
    for prefix in prefixes:
        p = prefix.rstrip("/") or "/"
        if p == "/" or path == p or path.startswith(p + "/"):
            return True
    return False


def path_under(prefixes: tuple[str, ...]) -> Validator:
    """Absolute paths without ``..`` under one of ``prefixes``."""

    def check(v: str) -> bool:
        norm = normalise_path(v)
        return norm is not None and under_prefixes(norm, prefixes)

    return Validator(
        "path:" + ",".join(prefixes),
        "an absolute path without '..' under " + ", ".join(prefixes),
        check,
    )


def enum_of(values: tuple[str, ...]) -> Validator:
    """One of a fixed set of strings."""
    allowed = frozenset(values)
    return Validator("enum:" + ",".join(values), "one of " + ", ".join(values), lambda v: v in allowed)


def regex(pattern: str) -> Validator:
    """A full match of ``pattern`` (which decides about a leading '-' itself)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"re:{pattern} is not a valid regular expression: {exc}") from None
    return Validator(
        "re:" + pattern,
        f"text matching {pattern}",
        lambda v: v.isprintable() and compiled.fullmatch(v) is not None,
    )


def sql_statement(group: str) -> Validator:
    """A whitelisted SQL statement (by name or group) from ``sql.yaml``."""
    names = sql.resolve_group(group)
    return Validator(
        "sql:" + group,
        "one of the whitelisted SQL statements " + ", ".join(names),
        lambda v: sql.match(v, names) is not None,
    )


_SIMPLE: dict[str, Validator] = {
    v.name: v
    for v in (
        Validator("k8s_name", "a Kubernetes name (DNS-1123: lowercase letters, digits, '-', '.')", _full(_DNS1123_SUBDOMAIN)),
        Validator("k8s_label", "a DNS-1123 label (lowercase letters, digits, '-'; at most 63)", _full(_DNS1123_LABEL)),
        Validator("k8s_selector", "a label selector such as app=web,tier!=cache", k8s_selector_ok),
        Validator("unit", "a systemd unit name (letters, digits, ':_.@-')", _full(_UNIT)),
        Validator("word", "a word of letters, digits and '_.:@+-' not starting with '-'", _full(_WORD)),
        Validator("ident", "an identifier (letters, digits, '_', '$', '-')", _full(_IDENT)),
        Validator("time", "a time such as '2026-11-26 10:00' or '1 hour ago'", _full(_TIME)),
        Validator("ipv4", "an IPv4 address", _full(_IPV4)),
        Validator("pid", "a process id from 1 to 4194304", int_range(1, 4_194_304).check),
        Validator("port", "a port from 1 to 65535", int_range(1, 65_535).check),
        Validator("any", "any single argument", lambda v: True),
    )
}


def from_spec(spec: str) -> Validator:
    """Build a validator from placeholder text: ``k8s_name``, ``int:1..500``,
    ``path:/var/log,/etc``, ``enum:a,b``, ``re:^x$``, ``sql:read_only``."""
    name, _, arg = spec.partition(":")
    name = name.strip()
    if name in _SIMPLE and not arg:
        return _SIMPLE[name]
    if name == "int":
        low, sep, high = arg.partition("..")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"int placeholder needs a range such as int:1..100, got {spec!r}")
        return int_range(int(low), int(high))
    if name == "path":
        prefixes = tuple(p.strip() for p in arg.split(",") if p.strip())
        if not prefixes or not all(p.startswith("/") for p in prefixes):
            raise ValueError(f"path placeholder needs absolute prefixes such as path:/var/log, got {spec!r}")
        return path_under(prefixes)
    if name == "enum":
        values = tuple(v.strip() for v in arg.split(",") if v.strip())
        if not values:
            raise ValueError(f"enum placeholder needs values such as enum:nginx,apache2, got {spec!r}")
        return enum_of(values)
    if name == "re":
        return regex(arg)
    if name == "sql":
        return sql_statement(arg)
    known = ", ".join(sorted([*_SIMPLE, "int:A..B", "path:/p", "enum:a,b", "re:RE", "sql:NAME"]))
    raise ValueError(f"unknown value type {spec!r}; known types: {known}")
