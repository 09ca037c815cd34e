"""argv hygiene and parsing against a program's flag policy.

Parsing mirrors how each program itself reads its command line (GNU
getopt_long, Go's pflag, or find/openssl single-dash words), so that what the
policy checks is what the program will do: bundled short flags are split,
``--opt=value`` is separated, and GNU long-option abbreviations are resolved
to the option they would select before anything is matched.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from permissions import kubectl, sql
from permissions.normalise import NotNormalisable
from permissions.programs import CommandSpec, OptionSpec, ProgramSpec, Style, ValueKind, override_problem
from permissions.validators import normalise_path

MAX_ARGS = 128
MAX_ELEMENT = 8192
_PROGRAM_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]{0,63}")
_GLOB = frozenset("*?[")
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class Refused(Exception):
    """The argv breaks the flag policy or hygiene; ``reason`` says how."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


def _describe_char(ch: str) -> str:
    name = unicodedata.name(ch, "control character")
    return f"U+{ord(ch):04X} ({name})"


def check_element(index: int, element: object) -> None:
    """Refuse control, format, bidi and zero-width characters and NFKC tricks."""
    if not isinstance(element, str):
        raise Refused(f"argument {index} is {type(element).__name__}, not text", "hygiene:type")
    if len(element) > MAX_ELEMENT:
        raise Refused(f"argument {index} is longer than {MAX_ELEMENT} characters", "hygiene:length")
    if element.isascii() and element.isprintable():
        return
    for ch in element:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise Refused(
                f"argument {index} contains {_describe_char(ch)}; control, bidi and invisible characters are never allowed",
                "hygiene:characters",
            )
    if unicodedata.normalize("NFKC", element) != element:
        raise Refused(
            f"argument {index} ({element!r}) contains look-alike characters (its NFKC form is "
            f"{unicodedata.normalize('NFKC', element)!r}); type the plain characters",
            "hygiene:nfkc",
        )


def check_hygiene(argv: Sequence[str]) -> None:
    """Structural checks every argv passes before anything else looks at it."""
    if isinstance(argv, str | bytes):
        raise Refused("a command must be a list of arguments, not a string", "hygiene:type")
    if not argv:
        raise Refused("empty command", "hygiene:empty")
    if len(argv) > MAX_ARGS:
        raise Refused(f"more than {MAX_ARGS} arguments", "hygiene:length")
    for i, element in enumerate(argv):
        check_element(i, element)


def program_name(argv0: str, known_paths: dict[str, str]) -> str:
    """The program a (bare or absolute) argv[0] names, per the node's map.

    A bare name must be a known program; an absolute path must be exactly the
    path the node maps a program to. Relative paths, ``..`` and any other path
    are refused: programs are never looked up on a caller's PATH.
    """
    if "/" not in argv0:
        if not _PROGRAM_NAME.fullmatch(argv0):
            raise Refused(f"{argv0!r} is not a valid program name", "program:name")
        return argv0
    for name, path in known_paths.items():
        if argv0 == path:
            return name
    raise Refused(
        f"{argv0!r}: programs are named plainly (e.g. 'kubectl') and resolved from the node's program map; "
        "other paths are never run",
        "program:path",
    )


@dataclass(slots=True)
class Parsed:
    """A command line as the program will understand it."""

    program: str
    subcommands: tuple[str, ...]
    positionals: list[str] = field(default_factory=list)
    options: list[tuple[str, str | None]] = field(default_factory=list)  # (canonical, value)
    specs: list[OptionSpec] = field(default_factory=list)  # parallel to options
    path_values: list[str] = field(default_factory=list)
    # (index in the parsed args, the value as written) of every path value, so that an
    # executor can open exactly these arguments safely (see tools/executors/safe_paths.py).
    path_args: list[tuple[int, str]] = field(default_factory=list)
    command: CommandSpec | None = None


class _Parser:
    """One pass over the arguments; ``pattern`` mode parses grant rules."""

    def __init__(self, spec: ProgramSpec, args: Sequence[str], *, pattern: bool) -> None:
        self.spec = spec
        self.args = args
        self.pattern = pattern
        self.chain: list[CommandSpec] = [spec.root]
        self.out = Parsed(program=spec.name, subcommands=())
        self.sub_open = bool(spec.root.subcommands)
        self.seen: set[str] = set()
        self.at = 0  # index of the token that holds the value being parsed

    # -- option lookup -------------------------------------------------
    def _lookup(self, name: str) -> OptionSpec | None:
        for command in reversed(self.chain):
            opt = command.options.get(name)
            if opt is not None:
                return opt
        return None

    def _lookup_long(self, token_name: str) -> OptionSpec:
        exact = self._lookup(token_name)
        if exact is not None:
            return exact
        if self.spec.style is Style.GNU:
            # getopt_long accepts any unique prefix; resolve it the same way so
            # that '--vacuum-t' is treated as the '--vacuum-time' it runs as.
            candidates = {
                command.options[n].canonical: command.options[n]
                for command in self.chain
                for n in command.long_names
                if n.startswith(token_name)
            }
            if len(candidates) == 1:
                return next(iter(candidates.values()))
            if len(candidates) > 1:
                raise Refused(
                    f"{token_name} is an ambiguous abbreviation ({', '.join(sorted(candidates))}); spell the option out",
                    f"flag:{self.spec.name}:ambiguous",
                )
        raise Refused(
            f"{token_name} is not an option this policy knows for {self._where()}",
            f"flag:{self.spec.name}:unknown",
        )

    def _where(self) -> str:
        return self.chain[-1].name

    # -- recording -----------------------------------------------------
    def _record(self, opt: OptionSpec, value: str | None, spelled: str) -> None:
        if opt.deny and not (opt.deny_unless is not None and value is not None and opt.deny_unless(value)):
            raise Refused(opt.deny if spelled == opt.canonical else f"{spelled} ({opt.canonical}): {opt.deny}", f"flag:{self.spec.name}:{opt.canonical}")
        if opt.canonical in self.seen and not opt.repeatable:
            raise Refused(
                f"{opt.canonical} is given twice; {self.spec.name} would silently use only one of them",
                f"flag:{self.spec.name}:repeated",
            )
        if (self.spec.before_subcommand is not None and len(self.chain) == 1 and self.sub_open
                and opt.canonical not in self.spec.before_subcommand):
            # kubectl only knows its root flags here; anything else would make it
            # skip a word and run a different command than the one checked.
            raise Refused(f"{spelled} must come after the {self.spec.name} command it belongs to",
                          f"flag:{self.spec.name}:position")
        self.seen.add(opt.canonical)
        if value is not None and not self.pattern:
            self._check_value(opt, value)
        if value is not None and opt.normalise is not None:
            value = self._normalised(opt.normalise, value, opt.canonical)
        self.out.options.append((opt.canonical, value))
        self.out.specs.append(opt)

    def _normalised(self, normalise: Callable[[str], str], value: str, what: str) -> str:
        # Rules are normalised too, but only their literal words: a placeholder
        # or glob is matched against the normalised command instead.
        if self.pattern and ("{" in value or _GLOB & set(value)):
            return value
        try:
            return normalise(value)
        except NotNormalisable as exc:
            raise Refused(str(exc), f"flag:{self.spec.name}:{what}:ambiguous") from None

    def _check_value(self, opt: OptionSpec, value: str) -> None:
        if opt.sql:
            if sql.match(value) is None:
                raise Refused(sql.why_refused(value), f"sql:{self.spec.name}")
            return
        if opt.path:
            self._path(value, opt.canonical)
        if opt.validator is not None and not opt.validator(value):
            raise Refused(
                f"{value!r} is not allowed for {opt.canonical}; allowed: {opt.validator.describe}",
                f"flag:{self.spec.name}:{opt.canonical}:value",
            )

    def _path(self, value: str, what: str) -> None:
        norm = normalise_path(value)
        if norm is None:
            raise Refused(
                f"{what}: paths must be absolute, free of '..' and made of letters, digits and '._@+,:=/-'; got {value!r}",
                "path:form",
            )
        self.out.path_values.append(norm)
        self.out.path_args.append((self.at, value))

    def _take_next(self, i: int, opt: OptionSpec, spelled: str) -> str:
        if i + 1 >= len(self.args):
            raise Refused(f"{spelled} needs a value", f"flag:{self.spec.name}:{opt.canonical}")
        self.at = i + 1
        return self.args[i + 1]

    # -- tokens ----------------------------------------------------------
    def run(self) -> Parsed:
        args, i, n = self.args, 0, len(self.args)
        end_of_options = False
        while i < n:
            tok = args[i]
            self.at = i
            if not end_of_options and tok == "--":
                if not self.spec.double_dash:
                    raise Refused(f"{self.spec.name} has no '--' marker; it would read '--' as an option",
                                  f"flag:{self.spec.name}:unknown")
                end_of_options = True
            elif not end_of_options and len(tok) > 1 and tok[0] == "-" or (
                self.spec.style is Style.SINGLE_DASH and not end_of_options and tok in ("!", "(", ")", ",")
            ):
                i = self._option(i, tok)
            else:
                self._positional(tok)
            i += 1
        self._finish()
        return self.out

    def _option(self, i: int, tok: str) -> int:
        style = self.spec.style
        value: str | None
        if style is Style.SINGLE_DASH:
            name, value = tok, None
            if tok.startswith("--") and len(tok) > 2:
                name = tok[1:]  # openssl treats '--in' as '-in'
            if self.spec.equals_values and "=" in name:
                name, _, value = name.partition("=")
            opt = self._lookup(name)
            if opt is None:
                raise Refused(f"{tok} is not an option this policy knows for {self._where()}", f"flag:{self.spec.name}:unknown")
            if opt.value is ValueKind.NONE:
                if value is not None:
                    raise Refused(f"{name} takes no value", f"flag:{self.spec.name}:{opt.canonical}")
            elif value is None:
                value = self._take_next(i, opt, name)
                i += 1
            self._record(opt, value, name)
            return i
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            opt = self._lookup_long("--" + name)
            if opt.value is ValueKind.NONE:
                if eq:
                    raise Refused(f"--{name} takes no value", f"flag:{self.spec.name}:{opt.canonical}")
                self._record(opt, None, "--" + name)
                return i
            if not eq:
                value, i = self._detached_value(i, opt, "--" + name)
            elif not value and style is Style.PFLAG:
                # pflag reads '--namespace=' as an empty value, which kubectl
                # then replaces with its default: not what the words say.
                raise Refused(f"--{name}= has an empty value; kubectl would silently use its default instead. "
                              f"Give a value (--{name}=VALUE) or leave the option out",
                              f"flag:{self.spec.name}:empty")
            self._record(opt, value, "--" + name)
            return i
        # A bundle of short options: '-ltnp', '-n5', '-nprod', pflag's '-n=prod'.
        j = 1
        while j < len(tok):
            ch = "-" + tok[j]
            opt = self._lookup(ch)
            if opt is None:
                raise Refused(f"{ch} is not an option this policy knows for {self._where()}", f"flag:{self.spec.name}:unknown")
            if opt.value is ValueKind.NONE:
                self._record(opt, None, ch)
                j += 1
                continue
            rest = tok[j + 1 :]
            if style is Style.PFLAG and rest.startswith("="):
                # pflag: '-n=x' is x, but '-n=' is the value '=' and '-n==x' is '=x'
                # (the next argument is never the value). Refuse both spellings
                # rather than guess which one was meant.
                if len(rest) == 1 or rest[1] == "=":
                    raise Refused(f"{ch}{rest}: kubectl reads this as the value {rest[1:] or '='!r}, not as an empty value, "
                                  f"and does not take the next argument as the value; write {ch} VALUE or {ch}=VALUE",
                                  f"flag:{self.spec.name}:equals")
                rest = rest[1:]
            if rest:
                value = rest
            else:
                value, i = self._detached_value(i, opt, ch)
            self._record(opt, value, ch)
            break
        return i

    def _detached_value(self, i: int, opt: OptionSpec, spelled: str) -> tuple[str | None, int]:
        """The value of an option written without one attached, and the new index:
        required values take the next token, peeking ones take it only when it
        fits (journalctl -n 50), optional ones never do."""
        if opt.value is ValueKind.REQUIRED:
            return self._take_next(i, opt, spelled), i + 1
        if opt.value is ValueKind.PEEK and i + 1 < len(self.args) and self._fits(opt, self.args[i + 1]):
            self.at = i + 1
            return self.args[i + 1], i + 1
        return None, i

    def _fits(self, opt: OptionSpec, candidate: str) -> bool:
        if self.pattern:
            return not candidate.startswith("-") and candidate not in ("...",) and not candidate.startswith("[")
        return opt.validator is not None and opt.validator(candidate)

    def _positional(self, tok: str) -> None:
        command = self.chain[-1]
        if self.sub_open and command.subcommands:
            sub = command.subcommands.get(tok)
            if sub is None:
                if not command.subcommand_required:
                    self.sub_open = False
                else:
                    reason = command.unknown_subcommand or f"is not a {command.name} command this policy knows"
                    raise Refused(f"{command.name} {tok!r} {reason}", f"subcommand:{command.name}:unknown")
            else:
                if sub.deny:
                    raise Refused(sub.deny, f"subcommand:{sub.name}")
                self.chain.append(sub)
                # The word as given: commands that share a spec (systemctl
                # restart/stop) must stay distinct for rules; true aliases
                # (kubectl top po/pod/pods) are one command.
                self.out.subcommands += (sub.word or tok,)
                self.sub_open = bool(sub.subcommands)
                return
        self.sub_open = False
        if command.positionals == "none":
            raise Refused(f"{command.name} takes no arguments here, got {tok!r}", f"args:{command.name}")
        if self.pattern:
            if command.positional_normalise is not None:
                tok = self._normalised(command.positional_normalise, tok, command.name)
            self.out.positionals.append(tok)
            return
        if command.positionals == "paths":
            self._path(tok, command.name)
        elif command.positional_validator is not None and not command.positional_validator(tok):
            raise Refused(
                f"{tok!r} is not allowed as an argument of {command.name}; allowed: {command.positional_validator.describe}",
                f"args:{command.name}",
            )
        if command.positional_normalise is not None:
            tok = self._normalised(command.positional_normalise, tok, command.name)
        self.out.positionals.append(tok)

    def _finish(self) -> None:
        command = self.chain[-1]
        self.out.command = command
        if command.forbidden_resources and not self.pattern:
            # Every argument, and events' --for TYPE/NAME: kubectl fetches each one.
            named = [*self.out.positionals, *(v for o, v in self.out.options if o == "--for" and v)]
            refusal = kubectl.forbidden_in(named, command.forbidden_resources)
            if refusal:
                raise Refused(refusal, f"resource:{command.name}")
        if command.resource_args is not None:
            self.out.positionals = kubectl.normalise(self.out.positionals, first_is_type=command.resource_args == "type")
        if self.sub_open and command.subcommands and command.subcommand_required and not self.pattern:
            raise Refused(f"{command.name} needs a subcommand", f"subcommand:{command.name}:missing")
        if not self.pattern:
            clash = override_problem(self.spec.name, self.out.options, self.out.specs)
            if clash:
                raise Refused(clash, f"flag:{self.spec.name}:overrides")
            present = {name for name, _ in self.out.options}
            for required in (r for c in self.chain for r in c.require):
                if required not in present:
                    raise Refused(f"{self.spec.name} must always run with {required}", f"flag:{self.spec.name}:require")


def parse(spec: ProgramSpec, args: Sequence[str], *, pattern: bool = False) -> Parsed:
    """Parse ``args`` (argv without the program) per ``spec``; raise ``Refused``."""
    return _Parser(spec, args, pattern=pattern).run()
