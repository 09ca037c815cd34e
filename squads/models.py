"""Squad bundles: a squad's agents, tools and default grants, loaded from YAML."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from squads.brain.extract import compile_slots
from squads.brain.models import Action, Playbook, Registered, Runbook, SlotSpec, ToolInfo
from permissions.models import GrantSpec
from tools.models import Effect, ToolSpec


class AgentSpec(BaseModel):
    """One specialist agent of a squad."""

    model_config = ConfigDict(extra="forbid")

    description: str


class SquadSpec(BaseModel):
    """``squad.yaml`` of a bundle, with its ``tools.yaml``, ``grants.yaml``, ``runbooks.yaml`` and
    ``slots.yaml`` merged in; the loader attaches the bundle's analyzers (``with_analyzers``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    description: str
    agents: dict[str, AgentSpec] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    grants: list[GrantSpec] = Field(default_factory=list, description="Extra default grants (e.g. deny rules).")
    runbooks: list[Runbook] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    example: str = Field(default="", description="An example of what a user might ask this squad.")
    slots: dict[str, SlotSpec | str] = Field(
        default_factory=dict, description="The values this squad pulls out of a message (slots.yaml)."
    )
    _analyzers: dict[str, Registered] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SquadSpec:
        names: set[str] = set()
        for tool in self.tools:
            if tool.agent not in self.agents:
                raise ValueError(f"squad {self.name}: tool {tool.name} names unknown agent {tool.agent!r}; agents: {sorted(self.agents)}")
            if tool.name in names:
                raise ValueError(f"squad {self.name}: tool {tool.name} is defined twice")
            names.add(tool.name)
        for runbook in self.runbooks:
            for step in [f for s in [*runbook.steps, *(s for o in runbook.offers for s in o.steps)] for f in s.flat()]:
                if step.tool not in names:
                    raise ValueError(f"squad {self.name}: runbook {runbook.name} uses unknown tool {step.tool!r}")
        runbook_names = {r.name for r in self.runbooks}
        for runbook in self.runbooks:
            for other in runbook.also:
                if other not in runbook_names:
                    raise ValueError(f"squad {self.name}: runbook {runbook.name} continues with unknown runbook {other!r}")
        for action in self.actions:
            if action.tool is not None and action.tool not in names:
                raise ValueError(f"squad {self.name}: action {action.name} uses unknown tool {action.tool!r}")
        return self

    def agent_id(self, agent: str) -> str:
        """The ``squad/agent`` name used by grants and the audit log."""
        return f"{self.name}/{agent}"

    def playbook(self) -> Playbook:
        """What the runbook brain needs of this squad, and nothing else."""
        return Playbook(
            title=self.title, description=self.description, example=self.example,
            runbooks=self.runbooks, actions=self.actions,
            programs=frozenset(t.argv[0] for t in self.tools if isinstance(t.argv[0], str)),
            analyzers={t.name: t.analyze for t in self.tools},
            registry=dict(self._analyzers), slots=compile_slots(self.slots),
            tools={t.name: ToolInfo(description=t.description, params={n: p.type for n, p in t.params.items()},
                                    changes=t.effect != Effect.ALLOW) for t in self.tools},
        )

    def with_analyzers(self, analyzers: dict[str, Registered]) -> SquadSpec:
        """This squad, reading its tools' output with ``analyzers`` (its bundle's and the shared ones)."""
        self._analyzers = dict(analyzers)
        return self

    @property
    def analyzer_registry(self) -> dict[str, Registered]:
        """The analyzers this squad's YAML may name."""
        return dict(self._analyzers)

    def tool(self, name: str) -> ToolSpec:
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(f"squad {self.name} has no tool {name!r}")
