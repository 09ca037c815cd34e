"""The scenario file format of ``../shared/scenarios/FORMAT.md`` as pydantic models.

It lives next to the fixture executor because a scenario is mostly fixtures: the lab
(``squads chat --lab``) and ``squads eval`` both read it; the eval keeps only the runner.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from squads.settings.yaml_loader import safe_load

from tools.executors.fixture import CommandPattern, Fixture

Mention = str | list[str]  # a list is satisfied by any one of its strings


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        CommandPattern(pattern)  # raises ValueError naming the pattern
    return patterns


class TurnExpect(BaseModel):
    """What one user turn must produce."""

    model_config = ConfigDict(extra="forbid")

    mentions: list[Mention] = Field(default_factory=list)
    absent: list[Mention] = Field(default_factory=list)
    ran: list[str] = Field(default_factory=list)
    never: list[str] = Field(default_factory=list)
    ran_nothing: bool = False
    approval_requested: list[str] = Field(default_factory=list)

    _patterns = field_validator("ran", "never", "approval_requested")(_check_patterns)


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    expect: TurnExpect = Field(default_factory=TurnExpect)


class ScenarioExpect(BaseModel):
    """What the whole conversation must (not) do."""

    model_config = ConfigDict(extra="forbid")

    ran: list[str] = Field(default_factory=list)
    never: list[str] = Field(default_factory=list)
    approval_requested: list[str] = Field(default_factory=list)
    max_commands: int | None = Field(default=None, ge=0)

    _patterns = field_validator("ran", "never", "approval_requested")(_check_patterns)


class SimulatedNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict)
    fixtures: list[Fixture] = Field(default_factory=list)


class Scenario(BaseModel):
    """One troubleshooting conversation against simulated nodes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    description: str = ""
    squad: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    nodes: dict[str, SimulatedNode] = Field(min_length=1)
    conversation: list[Turn] = Field(min_length=1)
    expect: ScenarioExpect = Field(default_factory=ScenarioExpect)

    @property
    def first_node(self) -> str:
        """The conversation's node (the first one listed)."""
        return next(iter(self.nodes))


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the problem."""


def load_scenario(path: Path) -> Scenario:
    """Parse and validate one scenario file."""
    try:
        data = safe_load(path.read_text())
        return Scenario.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def find_scenarios(paths: list[Path]) -> list[Path]:
    """Files named directly, and every ``*.yaml`` under folders, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.yaml")))
        elif path.exists():
            found.append(path)
        else:
            raise ScenarioError(f"{path}: no such file or folder")
    return found
