"""Node configuration: a machine squads can run commands on."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from permissions.argv import Refused, check_hygiene
from permissions.models import NodeContext
from permissions.validators import normalise_path

LOCAL_NODE = "local"
# A registered node's name; the agent checks its own --node-name against it too.
NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")
# What a person who names `local` while it is off is told (squads serve turns it off by default).
LOCAL_NODE_OFF = (
    "node 'local' (the control-plane host itself) is off on this server; "
    "set SQUADS_LOCAL_NODE=read-only (or on) and restart to use it"
)
# Variables that make a program load or run something else: never set for commands on a node.
UNSAFE_ENV = frozenset(
    """PATH PAGER EDITOR VISUAL LESSOPEN LESSCLOSE BASH_ENV ENV SHELL PYTHONPATH PYTHONSTARTUP PERL5OPT PERL5LIB
    NODE_OPTIONS RUBYOPT GIT_SSH GIT_SSH_COMMAND PROMPT_COMMAND IFS PSQLRC PGSERVICEFILE""".split()
)


class NodeConfig(BaseModel):
    """A node as configured in ``nodes.yaml`` (the control plane adds more later)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
    labels: dict[str, str] = Field(default_factory=dict)
    programs: dict[str, str] = Field(
        default_factory=dict, description="Program name -> absolute path on this node (overrides the defaults)."
    )
    env_passthrough: list[str] = Field(
        default_factory=list, description="Environment variables the local executor passes through (e.g. KUBECONFIG)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed environment for commands on this node (e.g. PGHOST, PGPORT, PGUSER for psql); never secrets.",
    )
    program_args: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Fixed arguments run in front of a program's own (nginx: [-p, /srv/nginx/, -c, /srv/nginx/nginx.conf]).",
    )
    path_prefixes: list[str] = Field(
        default_factory=list,
        description="Extra folders that tools' path parameters accept on this node (grants must allow them too).",
    )

    @field_validator("env", "env_passthrough")
    @classmethod
    def _safe_env(cls, value: dict[str, str] | list[str], info: ValidationInfo) -> dict[str, str] | list[str]:
        # The same names are refused whether the value is written here or copied from the
        # control plane's (or agent's) own environment: SQUADS_AUDIT_KEY must never reach a command.
        for name in value:
            upper = name.upper()
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", upper):
                raise ValueError(f"{info.field_name} {name!r}: not a variable name")
            if upper in UNSAFE_ENV or upper.startswith(("LD_", "DYLD_", "SYSTEMD_", "SQUADS_")) or any(
                word in upper for word in ("PASSWORD", "SECRET", "TOKEN", "PWD", "API_KEY", "PRIVATE_KEY")
            ):
                raise ValueError(
                    f"{info.field_name} {name}: not allowed for a node: it can run other programs, carries a secret "
                    "or is one of Squads' own settings (SQUADS_AUDIT_KEY, SQUADS_DATABASE_URL, ...); secrets belong "
                    "in the service's own credential files, e.g. ~/.pgpass, never in a command's environment"
                )
        return value

    @field_validator("program_args")
    @classmethod
    def _clean_args(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for program, args in value.items():
            try:
                check_hygiene([program, *args])
            except Refused as exc:
                raise ValueError(f"program_args for {program}: {exc.reason}") from None
        return value

    @field_validator("path_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if normalise_path(prefix) is None:
                raise ValueError(f"path prefix {prefix!r} must be absolute, without '..' and only [A-Za-z0-9._@+,:=/-]")
            if prefix.rstrip("/") in ("", "/etc", "/root", "/home", "/proc", "/sys", "/dev"):
                raise ValueError(f"path prefix {prefix!r} is too broad; name the folder the server uses")
        return value

    @field_validator("programs")
    @classmethod
    def _absolute(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not path.startswith("/") or "/../" in path or path.endswith("/.."):
                raise ValueError(f"program {name}: path must be absolute and free of '..', got {path!r}")
        return value

    def context(self) -> NodeContext:
        """What the policy engine needs of this node."""
        return NodeContext.of(self.name, self.labels, self.programs, self.program_args)


def node_config(name: str, labels: dict[str, str], programs: dict[str, str]) -> NodeConfig:
    """A registered node's config; programs are its agent's claim, dropped if they do not validate
    (the agent resolves its own paths anyway, so a bad claim must not hide the node)."""
    try:
        return NodeConfig(name=name, labels=labels, programs=programs)
    except ValueError:
        return NodeConfig(name=name, labels=labels)
