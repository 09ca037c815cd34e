"""Spellings a program itself treats as the same, reduced to one form before matching.

A flag policy names a normaliser for an option's value (``normalise: find_perm``)
or for a command's arguments (``positional_normalise: unit``). The parser applies
it to commands and to the literal tokens of rules alike, so a rule written with
one spelling matches every spelling the program reads the same way. What is
ambiguous (read differently by different versions of the program) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# gnulib's mode_compile: who letters -> the bits a clause may touch.
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}
_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=][rwxst]*)+)")
_OP = re.compile(r"([-+=])([rwxst]*)")


class NotNormalisable(ValueError):
    """The value is a spelling the policy will not guess the meaning of; the message says why."""


def unit_name(value: str) -> str:
    """A systemd unit as systemctl and journalctl resolve it: ``nginx.service``,
    ``nginx``, ``postgresql@16-main.service`` and ``postgresql@16-main`` name the
    same units, since both tools append ``.service`` to a name without a type."""
    return value[: -len(".service")] if value.endswith(".service") and len(value) > len(".service") else value


def find_perm(value: str) -> str:
    """``find -perm`` as GNU find reads it, in one octal spelling.

    ``-u=s``, ``-u+s``, ``-4000``, ``-04000`` and ``/u=s`` all become ``-4000``
    (for a single bit, "all of" and "any of" are the same test). Symbolic modes
    are applied to 0 as find's ``mode_adjust`` does. ``+MODE`` (read as ``/MODE``
    by old finds and refused by new ones), ``X`` (depends on the file) and
    copies such as ``g=u`` are refused as ambiguous."""
    prefix, body = (value[0], value[1:]) if value[:1] in ("-", "/") else ("", value)
    if body.startswith("+") and not prefix:
        raise NotNormalisable(f"-perm {value!r}: '+MODE' is read differently by old and new finds; write -MODE or /MODE")
    if re.fullmatch(r"0?[0-7]{1,4}", body):
        bits = int(body, 8)
    else:
        bits = 0
        for clause in body.split(","):
            match = _CLAUSE.fullmatch(clause)
            if match is None:
                raise NotNormalisable(
                    f"-perm {value!r}: not a mode this policy reads; write octal (-4000) or symbolic "
                    "(-u=s, /g+w) with the letters ugoa, the operators +-= and the permissions rwxst"
                )
            affected = 0
            for who in match.group(1) or "a":
                affected |= _WHO[who]
            for op, perms in _OP.findall(match.group(2)):
                change = 0
                for perm in perms:
                    change |= _PERM[perm]
                change &= affected
                if op == "+":
                    bits |= change
                elif op == "-":
                    bits &= ~change
                else:
                    bits = (bits & ~affected) | change
    if prefix == "/" and bits == 0:
        raise NotNormalisable(f"-perm {value!r}: '/' with no bits matched nothing in old finds and everything in new ones")
    if prefix == "/" and bits & (bits - 1) == 0:
        prefix = "-"
    return f"{prefix}{bits:04o}"


NORMALISERS: dict[str, Callable[[str], str]] = {"unit": unit_name, "find_perm": find_perm}


def normaliser(name: str) -> Callable[[str], str]:
    """The normaliser a flag policy names; unknown names are a policy-file error."""
    try:
        return NORMALISERS[name]
    except KeyError:
        raise ValueError(f"unknown normaliser {name!r}; known: {', '.join(sorted(NORMALISERS))}") from None
