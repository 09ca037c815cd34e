"""A simulated node: answers commands from recorded outputs (scenarios/FORMAT.md)."""

from __future__ import annotations

import posixpath
import shlex
import time
from collections.abc import Sequence
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, field_validator

from tools.executors.base import ExecResult, output_digest, RunContext
from tools.executors.local import decode_output


def argv_tokens(argv: Sequence[str]) -> list[str]:
    """The tokens patterns are matched against: the program, then the arguments
    with every ``--opt=value`` element split into ``--opt`` and ``value``."""
    tokens = [argv[0]] if argv else []
    for arg in argv[1:]:
        if arg.startswith("--") and "=" in arg:
            tokens.extend(arg.split("=", 1))
        else:
            tokens.append(arg)
    return tokens


def _token_matches(pattern: str, token: str) -> bool:
    if pattern == "|":
        return token == "|"  # written '|' in a pattern: a literal, not alternatives
    return any(alt == token or fnmatchcase(token, alt) for alt in pattern.split("|"))


class CommandPattern:
    """A command pattern: shell-like tokens matched against an argv (FORMAT.md)."""

    def __init__(self, pattern: str) -> None:
        """Parse ``pattern``; raises ValueError when it is empty or badly quoted."""
        try:
            tokens = shlex.split(pattern)
        except ValueError as exc:
            raise ValueError(f"invalid command pattern {pattern!r}: {exc}") from None
        if not tokens:
            raise ValueError(f"invalid command pattern {pattern!r}: it is empty")
        self.text = pattern
        # Split '--opt=value' in the pattern too, so '--replicas=2' written in a
        # pattern matches the argv '--replicas=2' and '--replicas 2' alike.
        self.tokens: tuple[str, ...] = tuple(argv_tokens(tokens))

    @property
    def size(self) -> int:
        """Number of tokens; the more a pattern has, the more specific it is."""
        return len(self.tokens)

    def matches(self, argv: Sequence[str]) -> bool:
        """Whether ``argv`` matches: the program, then every other token anywhere."""
        if not argv:
            return False
        program, *rest = argv_tokens(argv)
        # A pattern naming a path compares with the whole path; otherwise a
        # path argv[0] is compared by its base name.
        if "/" in program and "/" not in self.tokens[0]:
            program = posixpath.basename(program)
        if not _token_matches(self.tokens[0], program):
            return False
        return all(any(_token_matches(p, t) for t in rest) for p in self.tokens[1:])

    def __repr__(self) -> str:
        return f"CommandPattern({self.text!r})"


class Fixture(BaseModel):
    """One recorded answer of a simulated node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0

    @field_validator("run")
    @classmethod
    def _pattern_parses(cls, value: str) -> str:
        CommandPattern(value)
        return value


class FixtureExecutor:
    """Answers each argv with the most specific matching fixture, or exit 127."""

    def __init__(self, fixtures: Sequence[Fixture]) -> None:
        """Compile the fixtures' patterns, keeping the order they were written in."""
        self._table = [(CommandPattern(f.run), f) for f in fixtures]
        self.calls: list[list[str]] = []
        self.unmatched: list[list[str]] = []

    def find(self, argv: Sequence[str]) -> Fixture | None:
        """The fixture answering ``argv``: most tokens wins, the first written on a tie."""
        best: tuple[int, Fixture] | None = None
        for pattern, fixture in self._table:
            if (best is None or pattern.size > best[0]) and pattern.matches(argv):
                best = (pattern.size, fixture)
        return None if best is None else best[1]

    def run(
        self, argv: Sequence[str], *, timeout: float, max_output: int, context: RunContext | None = None
    ) -> ExecResult:
        """Return the recorded output for ``argv``; ``timeout`` has nothing to bound."""
        if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"argv must be a non-empty list of str, got {argv!r}")
        if max_output < 0:
            raise ValueError(f"max_output must not be negative, got {max_output}")
        start = time.monotonic()
        args = list(argv)
        self.calls.append(args)
        fixture = self.find(args)
        if fixture is None:
            self.unmatched.append(list(args))
            stdout, stderr, exit_code = "", f"no recorded output for: {shlex.join(args)}", 127
        else:
            stdout, stderr, exit_code = fixture.stdout, fixture.stderr, fixture.exit_code
        out, out_cut = _clip(stdout.encode(), max_output)
        err, err_cut = _clip(stderr.encode(), max_output)
        return ExecResult(
            exit_code=exit_code,
            stdout=decode_output(out, out_cut, max_output),
            stderr=decode_output(err, err_cut, max_output),
            duration_ms=round((time.monotonic() - start) * 1000),
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            output_sha256=output_digest(out, err),
        )


def _clip(data: bytes, limit: int) -> tuple[bytes, bool]:
    return (data[:limit], True) if len(data) > limit else (data, False)
