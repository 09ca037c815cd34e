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
    if "{" in token or "}" in token:
        # '{re:a{1,5}}' would otherwise become a glob that matches something else.
        raise ValueError(f"{token!r} is not one placeholder: a placeholder may not contain '{{' or '}}' "
                         "(write re:a+ rather than re:a{1,5}), and a literal may not contain them either")
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
    # Under '...' of an allow or approve rule, later arguments of the same kind
    # keep the rule's restriction: further positionals must pass ``rest_positional``
    # (the rule's last positional), and a repeat of an option the rule names with
    # a value must pass one of that option's matchers. Deny rules keep '...' wide.
    rest_positional: Matcher | None = None
    limits: tuple[tuple[str, tuple[Matcher, ...]], ...] = ()

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
        if self.rest_positional is not None and not all(map(self.rest_positional, positionals[len(self.positionals):])):
            return False
        remaining = list(parsed.options)
        for name, matcher in self.required:
            if not _consume(remaining, name, matcher):
                return False
        for name, matcher in self.optional:
            _consume(remaining, name, matcher)
        if not remaining:
            return True
        # Options that only change how output looks never decide a match.
        cosmetic = {item for item, spec in zip(parsed.options, parsed.specs, strict=True) if spec.only_formats(item[1])}
        if not self.rest:
            return all(item in cosmetic for item in remaining)
        limits = dict(self.limits)
        return all(
            item in cosmetic or item[0] not in limits or (item[1] is not None and any(m(item[1]) for m in limits[item[0]]))
            for item in remaining
        )


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


def _rest_limits(
    parsed: Parsed, positionals: tuple[Matcher, ...], options: list[tuple[str, str | None]]
) -> tuple[Matcher | None, tuple[tuple[str, tuple[Matcher, ...]], ...]]:
    """What '...' still restricts in an allow or approve rule (see ``Rule``)."""
    rest_positional: Matcher | None = None
    if positionals:
        last = parsed.positionals[-1]
        command = parsed.command
        # kubectl get/describe: after a literal resource type come names of that
        # type, another kind of argument (the kubectl checks see every one).
        type_word = (command is not None and command.resource_args == "type" and len(positionals) == 1
                     and "/" not in last and not _EMBEDDED.fullmatch(last) and not _GLOB_CHARS & set(last))
        if not type_word:
            rest_positional = positionals[-1]
    limits: dict[str, list[Matcher]] = {}
    for name, value in options:
        if value is not None:
            limits.setdefault(name, []).append(token_matcher(value))
    return rest_positional, tuple((name, tuple(ms)) for name, ms in limits.items())


def compile_rule(text: str, programs: dict[str, ProgramSpec], *, deny: bool = False) -> Rule:
    """Compile rule ``text`` against the flag policy of its program.

    In an allow or approve rule, a trailing ``...`` keeps every restriction the
    rule states (further positionals must match its last positional, repeats of
    a named option must match its value); ``deny=True`` compiles a deny rule,
    whose ``...`` matches anything further, so that it refuses more, never less."""
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
        rest_positional: Matcher | None = None
        limits: tuple[tuple[str, tuple[Matcher, ...]], ...] = ()
        if rest and not deny:
            rest_positional, limits = _rest_limits(
                parsed, tuple(token_matcher(t) for t in parsed.positionals), [*parsed.options, *group_options])
        return Rule(
            text=text,
            program=program,
            subcommands=parsed.subcommands,
            positionals=tuple(token_matcher(t) for t in parsed.positionals),
            # A formatting option a rule names (--sort-by=.lastTimestamp, -o wide) is
            # optional: the command may leave it out or format differently.
            required=tuple((name, None if v is None else token_matcher(v))
                           for (name, v), s in zip(parsed.options, parsed.specs, strict=True) if not s.only_formats(v)),
            optional=tuple((name, None if v is None else token_matcher(v))
                           for name, v in [*group_options, *((o, v) for (o, v), s in zip(parsed.options, parsed.specs, strict=True)
                                                             if s.only_formats(v))]),
            rest=rest,
            rest_positional=rest_positional,
            limits=limits,
        )
    except ValueError as exc:
        raise RuleError(f"rule {text!r}: {exc}") from exc
