"""Analyzers: functions that read one command's output and return facts and findings.

An analyzer is registered under a dotted name (``k8s.pods``) that tools and
runbook steps refer to from YAML, with the facts and finding codes it may
produce. It gets the command's output and the conversation's facts so far, and
never runs anything itself. The engine and the shared analyzers (``common``)
live here; each squad's own analyzers live in its bundle folder
(``squads/bundles/<squad>/analyzers``), and ``squads.bundle_code`` collects them.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from squads.brain.models import Analysis, Facts, Registered

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
GENERIC = "common.generic"  # what reads the output of a tool that names no analyzer
SHARED_MODULE = "squads.brain.analyzers.common"
log = logging.getLogger(__name__)


# Analyzers by the module that registered them: a bundle's loader collects its own modules' tables,
# so each squad sees its own analyzers and the shared ones, and two bundles never collide.
_BY_MODULE: dict[str, dict[str, Registered]] = {}


def analyzer(name: str, *, facts: Iterable[str] = (), codes: Iterable[str] = ()) -> Callable[[Analyzer], Analyzer]:
    """Register ``fn`` under ``name``, declaring the ``facts`` it may set and the finding ``codes`` it may add."""

    def register(fn: Analyzer) -> Analyzer:
        table = _BY_MODULE.setdefault(fn.__module__, {})
        if name in table:
            raise ValueError(f"analyzer {name} is registered twice in {fn.__module__}")
        table[name] = Registered(name=name, fn=fn, facts=frozenset(facts), codes=frozenset(codes))
        return fn

    return register


def registered(module: str) -> dict[str, Registered]:
    """The analyzers ``module`` registered when it ran (empty if it registered none)."""
    return dict(_BY_MODULE.get(module, {}))


def forget(package: str) -> None:
    """Drop what the modules of ``package`` registered, before they run again (a reloaded site bundle)."""
    for module in [m for m in _BY_MODULE if m == package or m.startswith(package + ".")]:
        del _BY_MODULE[module]


def shared() -> dict[str, Registered]:
    """The analyzers every squad may name (``common.*``)."""
    importlib.import_module(SHARED_MODULE)
    return registered(SHARED_MODULE)


def undeclared(entry: Registered, analysis: Analysis) -> list[str]:
    """What ``analysis`` produced that ``entry`` does not declare, as readable items (empty when honest)."""
    return [*(f"fact {f!r}" for f in sorted(set(analysis.facts) - entry.facts)),
            *(f"finding code {c!r}" for c in sorted({f.code for f in analysis.findings} - entry.codes))]


def analyze(table: Mapping[str, Registered], name: str | None, output: Output, facts: Facts) -> Analysis:
    """Run the analyzer ``name`` of ``table`` (the generic one when ``name`` is None)."""
    entry = table.get(name or GENERIC)
    if entry is None:
        raise KeyError(f"unknown analyzer {name!r}; known: {sorted(table)}")
    clipped = dataclasses.replace(output, stdout=clip_lines(output.stdout), stderr=clip_lines(output.stderr))
    analysis = entry.fn(clipped, facts)
    extra = undeclared(entry, analysis)
    if extra:
        # The reply is still right; only the load-time check of the YAML was told less than the truth.
        log.warning("analyzer %s produced undeclared %s; add them to its @analyzer(...)", entry.name, ", ".join(extra))
    return analysis
