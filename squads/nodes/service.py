"""Nodes: those configured in ``nodes.yaml``, and those registered here whose agents connect out."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from squads.audit.models import RecordKind
from squads.accounts.credentials import matches, new_secret, secret_hash
from squads.audit.chain import append
from squads.settings.yaml_loader import safe_load
from squads.nodes.models import LOCAL_NODE, LOCAL_NODE_OFF, NODE_NAME, NodeConfig, node_config
from squads.nodes.tables import NodeRecord
from squads.storage.lookup import AmbiguousId, id_by_prefix


class NodeNotFound(LookupError):
    """No node has that name; the message lists the ones that exist."""


def load_nodes(config_dir: Path, *, local: bool = True) -> dict[str, NodeConfig]:
    """Nodes from ``<config_dir>/nodes.yaml`` plus the built-in ``local`` node unless ``local`` is off."""
    nodes = {LOCAL_NODE: NodeConfig(name=LOCAL_NODE, labels={"squads.local": "true"})} if local else {}
    path = config_dir / "nodes.yaml"
    if not path.exists():
        return nodes
    try:
        data = safe_load(path.read_text()) or {}
        for raw in data.get("nodes", []):
            node = NodeConfig.model_validate(raw)
            if node.name == LOCAL_NODE and not local:
                continue  # an entry that configures `local` must not bring it back when the setting is off
            nodes[node.name] = node
    except (yaml.YAMLError, ValidationError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return nodes


def get_node(nodes: dict[str, NodeConfig], name: str) -> NodeConfig:
    """The node called ``name`` or a ``NodeNotFound`` naming the known ones."""
    try:
        return nodes[name]
    except KeyError:
        raise NodeNotFound(unknown_nodes_message([name], nodes)) from None


def unknown_nodes_message(names: list[str], known: Iterable[str]) -> str:
    """Why ``names`` cannot be used: the known nodes, or that ``local`` is turned off."""
    if names == [LOCAL_NODE]:
        return LOCAL_NODE_OFF
    message = f"unknown node{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}; known nodes: "
    message += ", ".join(sorted(known)) or "none"
    return message + (f" ({LOCAL_NODE_OFF})" if LOCAL_NODE in names else "")


# -- registered nodes (agents that connect out) -------------------------------------------

TOKEN_PREFIX = "sqn_"
LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?")


class NodeRegistryError(ValueError):
    """A registry request was refused; the message says why and what to do."""


@dataclass(frozen=True)
class IssuedToken:
    """A node's credentials, shown once: only the token's hash is kept."""

    node_id: str
    name: str
    token: str


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _new_token() -> str:
    return TOKEN_PREFIX + new_secret()


def _audit(session: Session, *, action: str, record: NodeRecord, actor: str | None) -> None:
    append(session, kind=RecordKind.NODE_ADMIN, actor=actor, node=record.name,
           details={"action": action, "node_id": record.id, "token_generation": record.token_generation})


def create_node(session: Session, *, name: str, labels: dict[str, str], actor: str | None) -> IssuedToken:
    """Register a node; returns its id and token (shown once). The action is audited."""
    if name == LOCAL_NODE:
        # `local` is the control-plane host: grants and SQUADS_LOCAL_NODE name it, so an agent under that
        # name would take them over (and answer for `local` while the setting is off).
        raise NodeRegistryError(f"node name {LOCAL_NODE!r} is reserved for the control-plane host; choose another name")
    if not NODE_NAME.fullmatch(name):
        raise NodeRegistryError(
            f"node name {name!r} is not allowed: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (e.g. web-7)"
        )
    for key, value in labels.items():
        if not LABEL.fullmatch(key) or not LABEL.fullmatch(value or "x"):
            raise NodeRegistryError(f"label {key}={value}: keys and values are letters, digits, '.', '_', '-' and '/'")
    if session.scalar(select(NodeRecord).where(NodeRecord.name == name)) is not None:
        raise NodeRegistryError(f"a node named {name!r} already exists; rotate its token or revoke it instead")
    token = _new_token()
    record = NodeRecord(
        id=uuid.uuid4().hex, name=name, labels=json.dumps(labels, sort_keys=True), token_sha256=secret_hash(token),
        token_generation=1, created_at=_now(), created_by=actor, revoked=False, facts="{}",
    )
    session.add(record)
    session.flush()
    _audit(session, action="created", record=record, actor=actor)
    return IssuedToken(node_id=record.id, name=name, token=token)


STALE_AFTER = timedelta(minutes=3)  # the hub writes a connected node's last seen once a minute


def connection_state(record: NodeRecord, *, now: datetime | None = None) -> str:
    """``online``, ``offline``, ``revoked`` or ``unknown``, as recorded by the control plane's hub.

    For processes other than the control plane (``squads node list``): a node
    marked connected whose last seen is older than a few minutes means the control
    plane stopped without saying so, and that is shown as unknown, not online."""
    if record.revoked:
        return "revoked"
    if record.connected_since is None:
        return "offline"
    seen = datetime.fromisoformat(record.last_seen) if record.last_seen else None
    if seen is None or (now or datetime.now(UTC)) - seen > STALE_AFTER:
        return "unknown (control plane silent)"
    return "online"


def find_node(session: Session, ref: str) -> NodeRecord:
    """A registered node by id or name, or ``NodeNotFound``."""
    record = session.get(NodeRecord, ref) or session.scalar(select(NodeRecord).where(NodeRecord.name == ref))
    if record is None:
        raise NodeNotFound(f"no registered node {ref!r}; `squads node list` shows them")
    return record


def resolve_node_ref(session: Session, ref: str) -> str:
    """A node name, a node id, or a unique prefix (at least 4 characters) of an id, as the exact id or name.

    For people typing at the CLI; ``NodeNotFound`` lists the ids when a prefix is ambiguous."""
    if session.scalar(select(NodeRecord.id).where(NodeRecord.name == ref)) is not None:
        return ref
    try:
        return id_by_prefix(session, NodeRecord.id, ref, what="node") or ref
    except AmbiguousId as exc:
        raise NodeNotFound(str(exc)) from None


def rotate_token(session: Session, *, ref: str, actor: str | None) -> IssuedToken:
    """A new token for the node; the old one stops working at once. Audited."""
    record = find_node(session, ref)
    if record.revoked:
        raise NodeRegistryError(f"node {record.name} is revoked; register it again under a new name")
    token = _new_token()
    record.token_sha256 = secret_hash(token)
    record.token_generation += 1
    _audit(session, action="token_rotated", record=record, actor=actor)
    return IssuedToken(node_id=record.id, name=record.name, token=token)


def revoke_node(session: Session, *, ref: str, actor: str | None) -> NodeRecord:
    """Revoke the node: its token never authenticates again. Audited."""
    record = find_node(session, ref)
    if not record.revoked:
        record.revoked = True
        _audit(session, action="revoked", record=record, actor=actor)
    return record


class LiveRegistry(Protocol):
    """What a registry change must tell the control plane's hub (``squads.nodes.hub.Hub``)."""

    def remember(self, record: NodeRecord) -> None: ...

    def kick_blocking(self, name: str, reason: str) -> None: ...


# The API and the web pages change the registry the same way: commit first, so the hub
# never believes in a change the database rolled back, then update the hub's copy at once
# (a new agent may connect now; a rotated or revoked one is cut off now, not at the next
# housekeeping round).

def create_and_remember(
    session: Session, hub: LiveRegistry, *, name: str, labels: dict[str, str], actor: str | None
) -> IssuedToken:
    """``create_node``, committed, and known to the hub at once."""
    issued = create_node(session, name=name, labels=labels, actor=actor)
    session.commit()
    hub.remember(find_node(session, issued.node_id))
    return issued


def rotate_and_kick(session: Session, hub: LiveRegistry, *, ref: str, actor: str | None) -> IssuedToken:
    """``rotate_token``, committed; the hub forgets the old token and closes a connected agent."""
    issued = rotate_token(session, ref=ref, actor=actor)
    session.commit()
    hub.remember(find_node(session, issued.node_id))
    hub.kick_blocking(issued.name, "this node's token was rotated")
    return issued


def revoke_and_kick(session: Session, hub: LiveRegistry, *, ref: str, actor: str | None) -> NodeRecord:
    """``revoke_node``, committed; the hub refuses the node from now on and closes a connected agent."""
    record = revoke_node(session, ref=ref, actor=actor)
    session.commit()
    hub.remember(record)
    hub.kick_blocking(record.name, "this node was revoked")
    return record


def parse_labels(text: str) -> dict[str, str]:
    """Labels from ``key=value`` lines (blank lines skipped); ``create_node`` checks their characters."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise NodeRegistryError(f"label line {number} ({line!r}): write key=value, e.g. env=production")
        if key in labels:
            raise NodeRegistryError(f"label {key} is given twice (lines with the same key)")
        labels[key] = value
    return labels


def list_registered(session: Session) -> list[NodeRecord]:
    """Every registered node, by name."""
    return list(session.scalars(select(NodeRecord).order_by(NodeRecord.name)))


def registered_configs(session: Session, *, names: Iterable[str] | None = None) -> dict[str, NodeConfig]:
    """Registered, unrevoked nodes as policy sees them: labels, and programs where the agent found them.

    With ``names``, only those nodes (the control plane's hub knows the rest already)."""
    # A `local` registered before the name was reserved never stands in for the control-plane host.
    stmt = select(NodeRecord).where(NodeRecord.revoked.is_(False), NodeRecord.name != LOCAL_NODE)
    if names is not None:
        stmt = stmt.where(NodeRecord.name.in_(list(names)))
    configs: dict[str, NodeConfig] = {}
    for record in session.scalars(stmt):
        found = json.loads(record.facts or "{}").get("programs") or {}
        configs[record.name] = node_config(record.name, json.loads(record.labels or "{}"),
                                           found if isinstance(found, dict) else {})
    return configs


def authenticate(session: Session, *, node_id: str, token: str) -> NodeRecord:
    """The node these credentials belong to, or ``NodeRegistryError`` saying why not.

    The comparison is constant-time, and a wrong id costs the same as a wrong token."""
    record = session.get(NodeRecord, node_id)
    if record is None or not matches(record.token_sha256, token):
        matches(None, token)  # the same work for an unknown id as for a wrong token
        raise NodeRegistryError("node id or token is wrong")
    if record.revoked:
        raise NodeRegistryError(f"node {record.name} is revoked")
    if record.name == LOCAL_NODE:
        raise NodeRegistryError(f"node name {LOCAL_NODE!r} is reserved for the control-plane host; register the "
                                "agent under another name")
    return record
