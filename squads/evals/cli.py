"""``squads eval``: run incident scenarios and report PASS/FAIL per scenario."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tools.executors.scenario import ScenarioError, find_scenarios, load_scenario
from squads.evals.runner import ScenarioReport, run_scenario
from squads.service import load_squads
from squads.settings.env import get_settings
from squads.storage.service import open_database


def eval_command(
    paths: Annotated[list[Path], typer.Argument(help="Scenario files or folders (searched for *.yaml).")],
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write a machine-readable report here.")] = None,
    database: Annotated[
        str | None, typer.Option(help="Audit/transcript database URL (default: a throwaway SQLite file).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print each turn's replies and commands.")] = False,
    now: Annotated[
        str | None,
        typer.Option(help="Evaluate as if it were this moment (ISO 8601, e.g. 2026-11-26T12:00:00Z): certificate "
                          "expiry and other dates; default: the real clock."),
    ] = None,
) -> None:
    """Run scenarios (../shared/scenarios/FORMAT.md) through the real runtime, policy and audit log."""
    try:
        files = find_scenarios(paths)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not files:
        typer.echo("error: no scenario files (*.yaml) found in " + ", ".join(map(str, paths)), err=True)
        raise typer.Exit(2)
    moment = None
    if now is not None:
        try:
            moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            typer.echo(f"error: --now {now!r} is not an ISO 8601 date and time (e.g. 2026-11-26T12:00:00Z)", err=True)
            raise typer.Exit(2) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    squads = load_squads([get_settings().effective_config_dir / "squads"])  # a site's own squads too
    reports: list[ScenarioReport] = []
    with tempfile.TemporaryDirectory(prefix="squads-eval-") as tmp:
        db = open_database(url=database or f"sqlite:///{Path(tmp) / 'eval.sqlite3'}")
        try:
            for path in files:
                try:
                    scenario = load_scenario(path)
                except ScenarioError as exc:
                    report = ScenarioReport(name=path.stem, path=str(path), reasons=[f"invalid scenario: {exc}"])
                else:
                    report = run_scenario(scenario, path=path, squads=squads, db=db, now=moment)
                reports.append(report)
                _print(report, verbose=verbose)
        finally:
            db.engine.dispose()
    passed = sum(r.passed for r in reports)
    typer.echo(f"{passed} passed, {len(reports) - passed} failed")
    if json_file is not None:
        summary = {
            "passed": passed, "failed": len(reports) - passed,
            "total_ms": round(sum(r.wall_ms for r in reports), 1),
            "scenarios": [r.as_dict() for r in reports],
        }
        json_file.write_text(json.dumps(summary, indent=2))
    raise typer.Exit(0 if passed == len(reports) else 1)


def _print(report: ScenarioReport, *, verbose: bool) -> None:
    if report.passed:
        typer.echo(f"PASS {report.name}")
    else:
        # One line per scenario (FORMAT.md), even when a reason (a validation error) spans several.
        reasons = "; ".join(" ".join(r.split()) for r in report.reasons)
        typer.echo(f"FAIL {report.name}: {reasons}")
    if verbose:
        for index, turn in enumerate(report.turns, start=1):
            typer.echo(f"  turn {index}: {turn.user}")
            for command in turn.commands:
                held = " (held for approval)" if command.get("held_for_approval") else ""
                typer.echo(f"    $ {' '.join(command['argv'])} -> {command.get('decision')}{held} exit={command.get('exit_code')}")
            for reply in turn.replies:
                typer.echo("    " + reply.replace("\n", "\n    "))
        for argv in report.unmatched:
            typer.echo(f"  unmatched: {' '.join(argv)}")
