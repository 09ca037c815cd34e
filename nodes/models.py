"""Node configuration: a machine squads can run commands on."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from permissions.models import NodeContext

LOCAL_NODE = "local"


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

    @field_validator("programs")
    @classmethod
    def _absolute(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not path.startswith("/") or "/../" in path or path.endswith("/.."):
                raise ValueError(f"program {name}: path must be absolute and free of '..', got {path!r}")
        return value

    def context(self) -> NodeContext:
        """What the policy engine needs of this node."""
        return NodeContext.of(self.name, self.labels, self.programs)
