"""Finding configured nodes."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from config.yaml_loader import safe_load
from nodes.models import LOCAL_NODE, NodeConfig


class NodeNotFound(LookupError):
    """No node has that name; the message lists the ones that exist."""


def load_nodes(config_dir: Path) -> dict[str, NodeConfig]:
    """Nodes from ``<config_dir>/nodes.yaml`` plus the built-in ``local`` node."""
    nodes = {LOCAL_NODE: NodeConfig(name=LOCAL_NODE, labels={"squads.local": "true"})}
    path = config_dir / "nodes.yaml"
    if not path.exists():
        return nodes
    try:
        data = safe_load(path.read_text()) or {}
        for raw in data.get("nodes", []):
            node = NodeConfig.model_validate(raw)
            nodes[node.name] = node
    except (yaml.YAMLError, ValidationError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return nodes


def get_node(nodes: dict[str, NodeConfig], name: str) -> NodeConfig:
    """The node called ``name`` or a ``NodeNotFound`` naming the known ones."""
    try:
        return nodes[name]
    except KeyError:
        raise NodeNotFound(f"unknown node {name!r}; known nodes: {', '.join(sorted(nodes))}") from None
