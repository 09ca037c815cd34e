"""Tool definitions: named argv templates with typed parameters.

A tool belongs to one agent of one squad and is loaded from the squad's
``tools.yaml``. Its ``argv`` is a list of template tokens:

- ``"kubectl"``: a literal argument;
- ``"{pod}"``: the value of parameter ``pod``, always exactly one argument;
- ``"deployment/{name}"``: a literal prefix or suffix around a parameter whose
  type cannot contain a separator (names, numbers), still one argument;
- ``["--tail", "{tail}"]``: an optional group, present when its parameters are;
- ``{if: previous, argv: ["--previous"]}``: present when a flag parameter is true;
- ``{sql: blocking}``: the whitelisted SQL statement of that name, its integer
  holes filled from parameters of the same name.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from permissions.validators import from_spec

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# Types whose values can never contain '/', '=', ',' or spaces, so a literal
# prefix or suffix around them cannot be re-parsed into something else.
EMBEDDABLE_TYPES = ("k8s_name", "k8s_label", "unit", "pid", "port", "int:", "enum:")


class Effect(StrEnum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"


class ParamSpec(BaseModel):
    """One typed parameter."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="validator: k8s_name, int:1..100, path:/var/log, enum:a,b, re:..., flag")
    description: str = ""
    required: bool = True
    default: str | int | bool | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value != "flag":
            from_spec(value)  # raises with the list of known types
        return value

    @property
    def is_flag(self) -> bool:
        return self.type == "flag"


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    if_: str = Field(alias="if")
    argv: list[str]


class SqlToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str


Token = str | list[str] | Condition | SqlToken


class ToolSpec(BaseModel):
    """A named argv template owned by one agent."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    agent: str
    description: str
    argv: list[Token] = Field(min_length=1)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    effect: Effect = Effect.ALLOW
    timeout_s: float | None = Field(
        default=None, gt=0, le=600,
        description="Seconds before the command is killed (default: the runtime's); the reply says a check was cut short.",
    )
    analyze: str | None = Field(
        default=None, description="The runbook brain's analyzer that reads this tool's output (e.g. k8s.pods)."
    )

    @model_validator(mode="after")
    def _placeholders_known(self) -> ToolSpec:
        used: set[str] = set()
        for token in self.argv:
            for text in _texts(token):
                for match in PLACEHOLDER.finditer(text):
                    name = match.group(1)
                    param = self.params.get(name)
                    if param is None:
                        raise ValueError(f"tool {self.name}: placeholder {{{name}}} has no parameter")
                    if text != match.group(0) and not param.type.startswith(EMBEDDABLE_TYPES):
                        raise ValueError(
                            f"tool {self.name}: {{{name}}} of type {param.type} must be a whole argument; "
                            f"only {', '.join(EMBEDDABLE_TYPES)} may carry a prefix or suffix"
                        )
                    used.add(name)
            if isinstance(token, Condition):
                if token.if_ not in self.params or not self.params[token.if_].is_flag:
                    raise ValueError(f"tool {self.name}: 'if: {token.if_}' must name a flag parameter")
                used.add(token.if_)
            if isinstance(token, SqlToken):
                from permissions import sql

                stmt = sql.statements().get(token.sql)
                if stmt is None:
                    raise ValueError(f"tool {self.name}: unknown SQL statement {token.sql!r}")
                for hole in stmt.holes:
                    if hole not in self.params or not self.params[hole].type.startswith(("int:", "pid")):
                        raise ValueError(f"tool {self.name}: SQL hole {hole} needs an integer parameter of that name")
                    used.add(hole)
        unused = set(self.params) - used
        if unused:
            raise ValueError(f"tool {self.name}: parameters never used in argv: {sorted(unused)}")
        if isinstance(self.argv[0], str) and PLACEHOLDER.search(self.argv[0]):
            raise ValueError(f"tool {self.name}: the program must be a literal")
        return self


def _texts(token: Any) -> list[str]:
    if isinstance(token, str):
        return [token]
    if isinstance(token, list):
        return list(token)
    if isinstance(token, Condition):
        return list(token.argv)
    return []
