"""Issue 11 §5: sub-commands are imported when they run; the listing stays true to them.

Speed itself is measured in benchmarks/startup_bench.py; these tests check what is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from squads.cli import COMMANDS, app, load_command
from tests.paths import REPO as ROOT

HEAVY = ("fastapi", "uvicorn", "starlette", "alembic", "sqlalchemy", "jinja2", "squads.brain", "chat_server")


def modules_after(args: list[str]) -> list[str]:
    """What a real interpreter has imported once ``squads <args>`` is done."""
    code = ("import json, sys\nfrom squads.cli import main\nsys.argv = ['squads', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["agent", "--help"]])
def test_help_loads_no_web_framework_database_or_brain(args: list[str]) -> None:
    loaded = modules_after(args)
    assert "squads.cli" in loaded
    assert [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


def test_the_top_level_help_imports_no_sub_command() -> None:
    loaded = modules_after(["--help"])
    modules = {entry.target.partition(":")[0] for entry in COMMANDS.values()}
    assert sorted(modules & set(loaded)) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    own = " ".join((command.help or "").split("\n\n")[0].split())
    assert COMMANDS[name].help == own, f"update COMMANDS[{name!r}].help in squads/cli.py"


def test_every_command_is_listed_and_runs_its_own_help() -> None:
    listing = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert listing.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in listing.output
        own = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
        assert own.exit_code == 0, (name, own.output)
        assert f" {name} [OPTIONS]" in own.output


def test_an_unknown_command_is_refused_with_the_usual_message() -> None:
    result = CliRunner().invoke(app, ["nonsense"])
    assert result.exit_code == 2
    assert "No such command 'nonsense'" in result.output
