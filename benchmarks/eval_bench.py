"""``squads eval`` speed: wall time per scenario, in total, and the runtime's overhead per step.

Usage: ``python benchmarks/eval_bench.py [--json] [--repeat N] [PATH ...]``

Runs the scenarios (default: the full eval, tests/scenarios and ../shared/scenarios/public,
at the moment the scenarios describe, as ``squads eval --now 2026-11-26T12:00:00Z``) through the real
runtime, policy and a fresh SQLite audit log, exactly as ``squads eval``
does, ``--repeat`` times, and reports the best run (the machine's noise only
ever adds time). Execution is a fixture lookup, so a scenario's wall time is
the runtime's own cost: brain, policy decisions, audit records and transcript
events. "Per step" is the time from one command reaching the executor to
the next one in the same turn: reading the previous output, planning, the
policy decision, three audit records and the transcript events.
Targets: total <= 5 s; overhead per step <= 5 ms. Printed, never asserted. A scenario that
fails makes the figures meaningless (a step that errors costs nothing): its reasons are printed
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from tools.executors.scenario import find_scenarios, load_scenario
from squads.evals.runner import run_scenario
from squads.service import load_squads
from squads.runtime import Conversation
from squads.storage.service import open_database
from tests.paths import PUBLIC_SCENARIOS
from tools.executors.fixture import FixtureExecutor

DEFAULT_PATHS = [Path(__file__).resolve().parent.parent / "tests" / "scenarios", PUBLIC_SCENARIOS]
TARGET_TOTAL_S = 5.0
SCENARIO_DAY = datetime(2026, 11, 26, 12, tzinfo=UTC)  # the day the scenarios describe (certificate expiry)
TARGET_STEP_MS = 5.0


class _Clock:
    """Timestamps of every executor call, and where each user turn starts, to measure the gaps
    between consecutive steps of one turn."""

    def __init__(self) -> None:
        self.calls: list[float | None] = []  # None marks the start of a turn
        self._run = FixtureExecutor.run
        self._handle = Conversation.handle

    def __enter__(self) -> _Clock:
        clock = self

        # Whatever keywords the executor takes (timeout, max_output, context...) pass through unchanged.
        def timed(executor, argv, **options):  # type: ignore[no-untyped-def]
            clock.calls.append(time.perf_counter())
            return clock._run(executor, argv, **options)

        def turn(conversation, text):  # type: ignore[no-untyped-def]
            clock.calls.append(None)
            return clock._handle(conversation, text)

        FixtureExecutor.run = timed  # type: ignore[method-assign]
        Conversation.handle = turn  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        FixtureExecutor.run = self._run  # type: ignore[method-assign]
        Conversation.handle = self._handle  # type: ignore[method-assign]

    def gaps(self) -> list[float]:
        """Seconds between consecutive commands of the same turn."""
        pairs = zip(self.calls, self.calls[1:], strict=False)
        return [b - a for a, b in pairs if a is not None and b is not None]


def one_run(paths: list[Path], gaps: list[float]) -> tuple[float, list[dict[str, object]]]:
    """Run every scenario once on a fresh database; (total seconds including setup, per-scenario rows)."""
    started = time.perf_counter()
    squads = load_squads()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="squads-eval-bench-") as tmp:
        db = open_database(url=f"sqlite:///{Path(tmp) / 'eval.sqlite3'}")
        for path in find_scenarios(paths):
            scenario = load_scenario(path)
            with _Clock() as clock:
                report = run_scenario(scenario, path=path, squads=squads, db=db, now=SCENARIO_DAY)
            gaps.extend(clock.gaps())
            steps = max(report.steps, 1)
            rows.append({
                "name": report.name, "passed": report.passed, "wall_ms": round(report.wall_ms, 2),
                "steps": report.steps, "ms_per_step": round(report.wall_ms / steps, 3),
                "reasons": report.reasons,
            })
        db.engine.dispose()
    return time.perf_counter() - started, rows


def run(paths: list[Path], repeat: int) -> dict[str, object]:
    """The best of ``repeat`` runs, with per-scenario figures from that run."""
    best: tuple[float, list[dict[str, object]], list[float]] | None = None
    for _ in range(repeat):
        gaps: list[float] = []
        total, rows = one_run(paths, gaps)
        if best is None or total < best[0]:
            best = (total, rows, gaps)
    assert best is not None
    total, rows, gaps = best
    per_step = sorted(g * 1000 for g in gaps)
    return {
        "scenarios": len(rows),
        "passed": sum(bool(r["passed"]) for r in rows),
        "total_s": round(total, 3),
        "scenarios_wall_s": round(sum(float(str(r["wall_ms"])) for r in rows) / 1000, 3),
        "steps_measured": len(per_step),
        "step_overhead_p50_ms": round(statistics.median(per_step), 3) if per_step else None,
        "step_overhead_p95_ms": round(per_step[int(len(per_step) * 0.95)], 3) if per_step else None,
        "per_scenario": rows,
    }


def _print(figures: dict[str, object]) -> None:
    table = Table(title="squads eval benchmark (best run)")
    for column in ("scenario", "passed", "wall ms", "steps", "wall ms / step"):
        table.add_column(column)
    for row in figures["per_scenario"]:  # type: ignore[attr-defined]
        table.add_row(str(row["name"]), str(row["passed"]), str(row["wall_ms"]), str(row["steps"]), str(row["ms_per_step"]))
    console = Console()
    console.print(table)
    console.print(
        f"total {figures['total_s']} s including start-up and migrations (target <= {TARGET_TOTAL_S} s); "
        f"scenarios alone {figures['scenarios_wall_s']} s; overhead per step p50 {figures['step_overhead_p50_ms']} ms, "
        f"p95 {figures['step_overhead_p95_ms']} ms over {figures['steps_measured']} steps (target <= {TARGET_STEP_MS} ms); "
        f"{figures['passed']}/{figures['scenarios']} passed"
    )


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=DEFAULT_PATHS)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    figures = run(args.paths, args.repeat)
    if args.json:
        print(json.dumps(figures))
    else:
        _print(figures)
    failed = [r for r in figures["per_scenario"] if not r["passed"]]  # type: ignore[attr-defined]
    for row in failed:
        print(f"FAIL {row['name']}: {'; '.join(row['reasons'])}", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
