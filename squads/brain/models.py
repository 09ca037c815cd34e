"""Runbooks as data: what the brain recognises, asks for, runs and offers.

A squad bundle's ``runbooks.yaml`` holds ``runbooks`` (diagnoses: triggers,
the slots they need, steps that follow the evidence, offers of a next
diagnostic) and ``actions`` (state changes, which the brain only ever turns
into approval requests).

Steps form a small forward-chaining system: the brain runs, in order, the
first step whose ``when`` conditions hold and whose command has not run yet in
this diagnosis, feeds the output to the tool's analyzer, records the facts and
findings it returns, and starts again from the top. So "connection refused to
host:port" in a log sets a fact that makes the "which Service exposes that
port" step eligible, and so on, without the runbook spelling out the order of
every branch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Facts = dict[str, Any]
CONDITION = re.compile(r"^!?[a-z_][a-z0-9_]*(=[A-Za-z0-9_.-]+)?$")


class Severity(IntEnum):
    """How much a finding explains: the reply leads with the deepest cause."""

    OK = 0
    INFO = 1
    PROBLEM = 2
    CAUSE = 3


@dataclass(frozen=True)
class Finding:
    """One thing an analyzer established, in words an engineer can act on."""

    code: str
    severity: Severity
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Analysis:
    """What an analyzer made of one command's output."""

    summary: str = ""
    facts: Facts = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add(self, code: str, severity: Severity, text: str, **data: Any) -> None:
        self.findings.append(Finding(code=code, severity=severity, text=text, data=data))


@dataclass(frozen=True)
class Registered:
    """An analyzer and what it declares it may produce: the fact names it sets and the codes of
    its findings. The declarations are the contract a bundle's YAML is checked against when it
    loads (a runbook's ``when``, ``foreach`` and ``advice`` may only name what its analyzers produce)."""

    name: str
    fn: Callable[[Any, Facts], Analysis]  # (Output, facts) -> Analysis
    facts: frozenset[str]
    codes: frozenset[str]


@dataclass(frozen=True)
class Slot:
    """A value the brain pulls out of a message (a pod, a pid, a path): its validator and its
    patterns, most specific first. Built from a bundle's ``slots.yaml`` (``SlotSpec``)."""

    name: str
    type: str  # validator spec, as a tool parameter spells it
    patterns: tuple[re.Pattern[str], ...]
    soft: frozenset[int] = frozenset()  # loose patterns: a candidate that fails the validator is skipped
    aliases: Mapping[str, str] = field(default_factory=dict)
    lower: bool = False
    keep: bool = False  # a new question keeps it (the namespace, the server); else it is the subject


def _conditions(values: list[str]) -> list[str]:
    for value in values:
        if not CONDITION.match(value):
            raise ValueError(f"condition {value!r}: write a fact name, !name (unset) or name=value")
    return values


class Step(BaseModel):
    """One tool call of a runbook, eligible when its conditions hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tool: str
    with_: dict[str, str | int | bool] = Field(default_factory=dict, alias="with")
    when: list[str] = Field(default_factory=list)
    foreach: str | None = Field(default=None, description="A fact holding a list; each item is {item}.")
    limit: int = Field(default=3, ge=1, le=20)
    analyze: str | None = None
    why: str = ""
    fallback: list[Step] = Field(
        default_factory=list,
        description="run instead when this step could not answer: refused, program missing (exit 126/127), "
        "or its analyzer set the fact `unavailable`",
    )

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: list[str]) -> list[str]:
        return _conditions(value)

    def flat(self) -> list[Step]:
        """This step and its fallbacks (and theirs), in order: every step it may run."""
        return [self, *(s for f in self.fallback for s in f.flat())]


class Offer(BaseModel):
    """A next diagnostic the reply offers; "yes" runs its steps."""

    model_config = ConfigDict(extra="forbid")

    when: list[str] = Field(default_factory=list)
    text: str
    steps: list[Step] = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: list[str]) -> list[str]:
        return _conditions(value)


class Runbook(BaseModel):
    """A diagnosis the brain recognises from the user's words."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    triggers: list[str] = Field(min_length=1)
    needs: dict[str, str] = Field(default_factory=dict, description="slot -> the question to ask when it is missing")
    defaults: dict[str, str | int] = Field(default_factory=dict)
    seed: dict[str, str] = Field(default_factory=dict, description="list fact <- slot, when the slot is known")
    seed_paths: str | None = Field(default=None, description="every valid absolute path in the message seeds this list")
    seed_targets: str | None = Field(
        default=None, description="host:port pairs in the message seed <prefix>_hosts and <prefix>_ports"
    )
    steps: list[Step] = Field(min_length=1)
    also: dict[str, list[str]] = Field(
        default_factory=dict,
        description="another runbook's steps, eligible once these facts hold (e.g. server-down: [server_down])",
    )
    offers: list[Offer] = Field(default_factory=list)
    advice: dict[str, str] = Field(default_factory=dict, description="finding code -> next step")
    ask_if_nothing: dict[str, str] = Field(
        default_factory=dict, description="slot -> question, asked when no step could run (nothing to go on)"
    )
    max_steps: int = Field(default=12, ge=1, le=40)


class Action(BaseModel):
    """A state change the user asks for: requested for approval (``tool``), or, where no tool
    may do it, answered with what to do instead (``says``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    triggers: list[str] = Field(min_length=1)
    tool: str | None = None
    says: str = ""
    params: dict[str, str | int] = Field(default_factory=dict, description="tool parameter <- '{slot}' or a literal")
    needs: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, str | int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tool_or_words(self) -> Action:
        if (self.tool is None) == (not self.says):
            raise ValueError(f"action {self.name}: give either a tool (requested for approval) or says (an answer)")
        return self


class SlotPattern(BaseModel):
    """A slot pattern that is loose (``soft``): a candidate from it that fails the validator is skipped."""

    model_config = ConfigDict(extra="forbid")

    pattern: str
    soft: bool = False


class SlotSpec(BaseModel):
    """One entry of a bundle's ``slots.yaml``: a value the brain pulls out of a user's message."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="the validator, spelled as a tool parameter's type (k8s_name, pid, path:/, enum:...)")
    patterns: list[str | SlotPattern] = Field(
        min_length=1, description="regular expressions, most specific first; group 1 is the value; {name} is a word"
    )
    aliases: dict[str, str] = Field(default_factory=dict, description="word -> value (apache -> apache2)")
    lower: bool = Field(default=False, description="lower-case the value before it is checked")
    keep: bool = Field(default=False, description="a new question keeps it (the namespace, the server)")


class RunbookBundle(BaseModel):
    """``runbooks.yaml`` of a squad bundle."""

    model_config = ConfigDict(extra="forbid")

    runbooks: list[Runbook] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)


@dataclass(frozen=True)
class ToolInfo:
    """What the brain knows of a tool beyond its analyzer: the words that say what it checks (a
    follow-up question is matched against them) and its parameters' validators."""

    description: str = ""
    params: Mapping[str, str] = field(default_factory=dict)  # parameter -> validator spec (path:/var/log,...)
    changes: bool = False  # needs approval: never run to answer a question


@dataclass(frozen=True)
class Playbook:
    """The brain's whole view of a squad: what it can plan and how each tool's output is read.

    A narrow input of the brain's own, so the brain never imports the squad models (which
    import the brain's runbook types): ``SquadSpec.playbook()`` builds one."""

    title: str
    description: str
    example: str
    runbooks: list[Runbook]
    actions: list[Action]
    programs: frozenset[str]  # what an explicit command may name (each tool's program)
    analyzers: dict[str, str | None]  # tool name -> the analyzer that reads its output
    # The squad's own analyzers by name (the shared ones are always there) and its slot vocabulary.
    registry: Mapping[str, Registered] = field(default_factory=dict)
    slots: Mapping[str, Slot] = field(default_factory=dict)
    tools: Mapping[str, ToolInfo] = field(default_factory=dict)
