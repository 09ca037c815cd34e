"""Command rules: token patterns on parsed argv, never on strings.

A rule is written like a command line, for example::

    kubectl logs {k8s_name} -n {k8s_name} [--previous] [--tail {int:1..10000}] ...

- plain tokens are literals; tokens with ``*``, ``?`` or ``[...]`` are globs
  matched against one argument only (a glob never spans two arguments);
- ``{type}`` is a typed placeholder (see ``permissions.validators``);
- ``[-o value]`` is an optional option group (so a glob may not begin with
  ``[``);
- a trailing ``...`` allows any further arguments, each of which must still
  pass the program's flag policy; without it, nothing else may follow.

Rules are parsed with the same flag policy as the commands they match, so
``-n x`` in a rule also matches ``--namespace=x`` and ``-nx``, and options may
come in any order, as the programs themselves accept.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from permissions.argv import Parsed, Refused, parse
from permissions.programs import ProgramSpec
from permissions.validators import from_spec

Matcher = Callable[[str], bool]
_GLOB_CHARS = frozenset("*?[")


class RuleError(ValueError):
    """A rule cannot be compiled; the message names the rule and the problem."""


_EMBEDDED = re.compile(r"([^{}*?\[]*)\{([^{}]+)\}([^{}*?\[]*)")


def token_matcher(token: str) -> Matcher:
    """Literal, glob or ``{type}`` placeholder for one argument.

    A placeholder may carry a literal prefix or suffix (``deployment/{k8s_name}``):
    the argument must start and end with them and the rest must pass the type.
    """
    embedded = _EMBEDDED.fullmatch(token)
    if embedded:
        prefix, spec, suffix = embedded.groups()
        validator = from_spec(spec)
        if not prefix and not suffix:
            return validator
        cut = len(suffix)
        return lambda value: (
            len(value) > len(prefix) + cut
            and value.startswith(prefix)
            and value.endswith(suffix)
            and validator(value[len(prefix) : len(value) - cut])
        )
    if _GLOB_CHARS & set(token):
        return lambda value: fnmatchcase(value, token)
    return token.__eq__


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule; ``text`` is what people see in decisions and audit."""

    text: str
    program: str
    subcommands: tuple[str, ...]
    positionals: tuple[Matcher, ...]
    required: tuple[tuple[str, Matcher | None], ...]
    optional: tuple[tuple[str, Matcher | None], ...]
    rest: bool

    def matches(self, parsed: Parsed) -> bool:
        """True when ``parsed`` is a command this rule covers."""
        if parsed.subcommands != self.subcommands or parsed.program != self.program:
            return False
        positionals = parsed.positionals
        if len(positionals) < len(self.positionals) or (not self.rest and len(positionals) != len(self.positionals)):
            return False
        for positional, value in zip(self.positionals, positionals, strict=False):
            if not positional(value):
                return False
        remaining = list(parsed.options)
        for name, matcher in self.required:
            if not _consume(remaining, name, matcher):
                return False
        for name, matcher in self.optional:
            _consume(remaining, name, matcher)
        return self.rest or not remaining


def _consume(remaining: list[tuple[str, str | None]], name: str, matcher: Matcher | None) -> bool:
    for i, (opt, value) in enumerate(remaining):
        if opt != name:
            continue
        if matcher is None:
            if value is None:
                del remaining[i]
                return True
        elif value is not None and matcher(value):
            del remaining[i]
            return True
    return False


def _split_groups(text: str, tokens: list[str]) -> tuple[list[str], list[list[str]], bool]:
    main: list[str] = []
    groups: list[list[str]] = []
    current: list[str] | None = None
    rest = False
    for i, tok in enumerate(tokens):
        if tok == "...":
            if i != len(tokens) - 1 or current is not None:
                raise RuleError(f"rule {text!r}: '...' may only end the rule")
            rest = True
            continue
        if tok.startswith("[") and current is None:
            current = []
            tok = tok[1:]
        if current is not None:
            if tok.endswith("]"):
                tok = tok[:-1]
                if tok:
                    current.append(tok)
                groups.append(current)
                current = None
            elif tok:
                current.append(tok)
            continue
        main.append(tok)
    if current is not None:
        raise RuleError(f"rule {text!r}: '[' without a closing ']'")
    return main, groups, rest


def compile_rule(text: str, programs: dict[str, ProgramSpec]) -> Rule:
    """Compile rule ``text`` against the flag policy of its program."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise RuleError(f"rule {text!r}: {exc}") from exc
    if not tokens:
        raise RuleError("empty rule")
    program = tokens[0]
    spec = programs.get(program)
    if spec is None:
        raise RuleError(f"rule {text!r}: unknown program {program!r}; known: {', '.join(sorted(programs))}")
    main, groups, rest = _split_groups(text, tokens[1:])
    try:
        parsed = parse(spec, main, pattern=True)
        group_options: list[tuple[str, str | None]] = []
        for group in groups:
            sub = parse(spec, [*parsed.subcommands, *group], pattern=True)
            if sub.positionals or sub.subcommands != parsed.subcommands:
                raise RuleError(f"rule {text!r}: an optional group [...] may hold options only, got {group}")
            group_options.extend(sub.options)
    except Refused as exc:
        raise RuleError(f"rule {text!r}: {exc.reason}") from exc
    try:
        return Rule(
            text=text,
            program=program,
            subcommands=parsed.subcommands,
            positionals=tuple(token_matcher(t) for t in parsed.positionals),
            required=tuple((name, None if v is None else token_matcher(v)) for name, v in parsed.options),
            optional=tuple((name, None if v is None else token_matcher(v)) for name, v in group_options),
            rest=rest,
        )
    except ValueError as exc:
        raise RuleError(f"rule {text!r}: {exc}") from exc
