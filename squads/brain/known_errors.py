"""The catalogue beside an analyzer's own reasoning: one call that reports what the reasoning left out.

A squad's log analyzer often knows a log better than any single signature (the database squad reads a
"too many connections for database X" line to the end, the security squad counts failed logins per
source). Its specific findings win; the catalogue fills in the rest: the known errors among the lines
the reasoning did not explain, each with its meaning, causes, fix and count, the error lines nobody
recognises (never dropped), and the next checks of what it matched.
"""

from __future__ import annotations

from collections.abc import Callable

from squads.brain.models import Analysis
from squads.brain.signatures import CODES, FACTS, log_findings, match_log
from squads.brain.steps import merge_facts

__all__ = ["CODES", "FACTS", "fill_in"]


def _nothing(_line: str) -> bool:
    return False


def fill_in(result: Analysis, text: str, *, squad: str, source: str,
            explained: Callable[[str], bool] = _nothing) -> None:
    """Add to ``result`` the catalogue's findings for the lines of ``text`` its own reasoning did not
    explain: a line ``explained`` accepts (the analyzer's parser consumed it), or one a finding of
    ``result`` already quotes, is left out, so the same line never becomes two findings. The
    analyzer declares ``FACTS`` and ``CODES`` of this module."""
    quoted = "\n".join(f.text for f in result.findings)
    kept = [line for line in text.splitlines()
            if line.strip() and not explained(line) and line.strip() not in quoted]
    if not kept:
        return
    facts, findings = log_findings(match_log("\n".join(kept), squad=squad), source=source)
    merge_facts(result.facts, facts)
    result.findings.extend(f for f in findings if f not in result.findings)
