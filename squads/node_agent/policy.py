"""The node's own policy: what this machine's owner lets the control plane run here.

The agent decides every request again with the same engine the control plane
uses, so a compromised control plane cannot make a node run what its owner did
not allow. The policy file (``--policy``) is YAML::

    defaults: read-only        # read-only (default) | shipped | none
    node:                      # how this machine differs from the canonical paths
      programs: {nginx: /opt/nginx/sbin/nginx}
      program_args: {nginx: [-p, /srv/nginx/, -c, /srv/nginx/nginx.conf]}
      env: {PGHOST: /var/run/postgresql}
      env_passthrough: [KUBECONFIG]
    programs: {}               # programs the squads do not ship, same format as programs.yaml
    grants: []                 # added to the defaults, same format as the control plane's grants

``read-only`` keeps the squads' shipped read-only rules and drops every rule
that changes state, even approved ones; ``shipped`` keeps the approval rules
too, so a command a person approved on the control plane runs here;
``none`` starts from nothing but the file's grants.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from squads.settings.yaml_loader import safe_load
from squads.nodes.models import NodeConfig
from permissions.engine import PolicyEngine
from permissions.models import GrantSpec, NodeContext
from permissions.programs import ProgramSpec, load_programs, programs_from_document
from permissions.service import GrantError, parse_grants
from squads.grants import default_grants_from_yaml

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NodeSection(BaseModel):
    """The ``node:`` section: the fields of a ``nodes.yaml`` entry that describe this machine."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict)
    programs: dict[str, str] = Field(default_factory=dict)
    program_args: dict[str, list[str]] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=list)


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Literal["read-only", "shipped", "none"] = "read-only"
    node: NodeSection = Field(default_factory=NodeSection)
    programs: dict[str, dict[str, object]] = Field(default_factory=dict)
    grants: list[dict[str, object]] = Field(default_factory=list)


class PolicyError(ValueError):
    """The policy file is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class LocalPolicy:
    """The engine, this machine's description and where they came from."""

    engine: PolicyEngine
    node: NodeConfig
    programs: dict[str, ProgramSpec]
    source: str

    def context(self, name: str) -> NodeContext:
        """The policy context for this node under its registered ``name``."""
        return NodeContext.of(name, self.node.labels, self.found_programs(), self.node.program_args)

    def found_programs(self) -> dict[str, str]:
        """Every known program that exists here, with its path (what the facts report)."""
        found: dict[str, str] = {}
        for name, spec in self.programs.items():
            path = self.node.programs.get(name) or spec.path
            if not os.access(path, os.X_OK):
                path = shutil.which(name, path=SAFE_PATH) or ""
            if path:
                found[name] = path
        return found


def _read_only(grant: GrantSpec) -> GrantSpec:
    return grant.model_copy(update={"approve": []})


def load_policy(path: Path | None) -> LocalPolicy:
    """The node's policy from ``path``, or the read-only default when there is none."""
    shipped = load_programs()
    if path is None:
        doc, source = PolicyFile(), "read-only defaults"
    else:
        try:
            data = safe_load(path.read_text())
            doc, source = PolicyFile.model_validate(data or {}), str(path)
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise PolicyError(f"{path}: {exc}") from None
    try:
        programs = {**shipped, **programs_from_document({"programs": doc.programs}, source=source, shipped=shipped)}
        grants = parse_grants({"grants": doc.grants}, source=source, programs=programs)
        node = NodeConfig(name="node", **doc.node.model_dump())
    except (ValueError, GrantError, ValidationError) as exc:
        raise PolicyError(str(exc)) from None
    defaults = default_grants_from_yaml() if doc.defaults != "none" else []
    if doc.defaults == "read-only":
        defaults = [_read_only(g) for g in defaults]
    engine = PolicyEngine(defaults=defaults, grants=grants, programs=programs, resolve_path=os.path.realpath)
    return LocalPolicy(engine=engine, node=node, programs=programs, source=f"{source} (defaults: {doc.defaults})")
