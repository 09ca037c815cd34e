"""Schemas of the policy layer: decisions, grants and their database table."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Verdict(StrEnum):
    """The three outcomes of a policy check."""

    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one argv, and why, in words a person reads."""

    verdict: Verdict
    reason: str
    rule: str | None = None  # the rule, flag or check that decided it
    grant: str | None = None
    agent: str | None = None
    node: str | None = None
    program_path: str | None = None  # absolute path the program resolves to
    argv: tuple[str, ...] = field(default=())
    # Fixed arguments the node's owner configured for this program (e.g. nginx -p PREFIX -c FILE);
    # the policy decides on ``argv``, the node runs these in front of its arguments.
    program_args: tuple[str, ...] = field(default=())
    # (index in ``argv``, value as written) of every argument the flag policy reads as a
    # path; executors open these without following links (tools/executors/safe_paths.py).
    path_args: tuple[tuple[int, str], ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW

    def exec_argv(self) -> list[str]:
        """The argv to execute: the program replaced by its resolved absolute path."""
        if not self.program_path:
            raise ValueError("only an allowed or approvable decision has an executable argv")
        return [self.program_path, *self.program_args, *self.argv[1:]]

    def exec_path_args(self) -> tuple[tuple[int, str], ...]:
        """``path_args`` as indices into ``exec_argv()`` (shifted past the node's fixed arguments)."""
        shift = len(self.program_args)
        return tuple((i + shift, value) for i, value in self.path_args)

    def as_dict(self) -> dict[str, object]:
        return {
            "decision": self.verdict.value,
            "reason": self.reason,
            "rule": self.rule,
            "grant": self.grant,
            "agent": self.agent,
            "node": self.node,
            "program_path": self.program_path,
            "program_args": list(self.program_args),
            "argv": list(self.argv),
        }


class NodeSelector(BaseModel):
    """Which nodes a grant covers: names (globs) and/or labels (all must match).

    An empty selector covers every node.
    """

    model_config = ConfigDict(extra="forbid")

    names: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class Constraints(BaseModel):
    """Scope limits that apply to every rule of the grant they sit in."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] | None = Field(
        default=None,
        description="kubectl must name one of these with -n; -A is refused.",
    )
    path_prefixes: list[str] | None = Field(
        default=None,
        description="Every path argument must resolve under one of these folders.",
    )


class GrantSpec(BaseModel):
    """Which agents may run which command rules on which nodes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    agents: list[str] = Field(min_length=1, description="'squad/agent' names; globs allowed ('k8s/*').")
    nodes: NodeSelector = Field(default_factory=NodeSelector)
    allow: list[str] = Field(default_factory=list)
    approve: list[str] = Field(default_factory=list, description="Rules that run only after approval.")
    deny: list[str] = Field(default_factory=list, description="Rules that always win over allow.")
    constraints: Constraints = Field(default_factory=Constraints)
    replace_defaults: bool = Field(
        default=False,
        description="On the nodes it covers, the squads' shipped defaults no longer apply to these agents.",
    )


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What the policy needs to know about the node a command is for."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    programs: tuple[tuple[str, str], ...] = ()  # program -> absolute path overrides
    program_args: tuple[tuple[str, tuple[str, ...]], ...] = ()  # program -> fixed leading arguments

    @classmethod
    def of(
        cls, name: str, labels: dict[str, str] | None = None, programs: dict[str, str] | None = None,
        program_args: dict[str, list[str]] | None = None,
    ) -> NodeContext:
        """Build from plain dicts (sorted, so equal nodes share a cache entry)."""
        return cls(
            name=name, labels=tuple(sorted((labels or {}).items())), programs=tuple(sorted((programs or {}).items())),
            program_args=tuple(sorted((k, tuple(v)) for k, v in (program_args or {}).items())),
        )

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)
