"""Analyzers: functions that read one command's output and return facts and findings.

An analyzer is registered under a dotted name (``k8s.pods``) that tools and
runbook steps refer to from YAML. It gets the command's output and the
conversation's facts so far, and never runs anything itself.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from squads.brain.models import Analysis, Facts

MODULES = ("k8s", "k8s_cluster", "webserver", "database", "security", "common")
MAX_LINE = 4096  # longer lines are cut for analysis (the full output stays in the transcript)


def clip_lines(text: str) -> str:
    """``text`` with every line cut to MAX_LINE characters, so no analyzer regex ever sees a
    megabyte-long line from a hostile log."""
    if len(text) <= MAX_LINE:
        return text
    return "\n".join(line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …" for line in text.split("\n"))


@dataclass(frozen=True)
class Output:
    """One command's result, as an analyzer sees it."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    tool: str | None = None
    item: Any = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """stdout and stderr together (many tools report on stderr: nginx -t, apache2ctl)."""
        return f"{self.stdout}\n{self.stderr}" if self.stderr else self.stdout

    @property
    def missing(self) -> bool:
        """The program or its recorded output does not exist on this node."""
        return self.exit_code == 127


Analyzer = Callable[[Output, Facts], Analysis]
_REGISTRY: dict[str, Analyzer] = {}


def analyzer(name: str) -> Callable[[Analyzer], Analyzer]:
    """Register ``fn`` under ``name``."""

    def register(fn: Analyzer) -> Analyzer:
        if name in _REGISTRY:
            raise ValueError(f"analyzer {name} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return register


def registry() -> dict[str, Analyzer]:
    """Every analyzer, with the built-in modules imported."""
    for module in MODULES:
        importlib.import_module(f"squads.brain.analyzers.{module}")
    return _REGISTRY


def analyze(name: str | None, output: Output, facts: Facts) -> Analysis:
    """Run the named analyzer (the generic one when ``name`` is None)."""
    fn = registry().get(name or "common.generic")
    if fn is None:
        raise KeyError(f"unknown analyzer {name!r}; known: {sorted(registry())}")
    clipped = dataclasses.replace(output, stdout=clip_lines(output.stdout), stderr=clip_lines(output.stderr))
    return fn(clipped, facts)
