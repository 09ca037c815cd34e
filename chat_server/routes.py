"""The node API (/api/nodes). Every route requires an API token (``Authorization: Bearer sqa_...``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from squads.node_agent.install import install_command
from chat_server.deps import ContextDep, HubDep, ReaderDep, SessionDep
from chat_server.principals import Admin, Viewer
from squads.nodes.hub import Hub
from squads.nodes.tables import NodeRecord
from squads.context import AppContext
from squads.nodes.service import (
    IssuedToken,
    NodeNotFound,
    NodeRegistryError,
    create_and_remember,
    list_registered,
    revoke_and_kick,
    rotate_and_kick,
)

router = APIRouter(prefix="/api", tags=["nodes"])


class NodeIn(BaseModel):
    """A node to register."""

    name: str = Field(min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)


class NodeOut(BaseModel):
    """A registered node, never with its token."""

    id: str
    name: str
    labels: dict[str, str]
    revoked: bool
    online: bool = Field(description="Its agent is connected to this control plane now.")
    last_seen: str | None
    connected_since: str | None = None
    peer: str | None = Field(default=None, description="The address the agent connected from.")
    running: int = Field(default=0, description="Commands in flight on it.")
    agent_version: str | None
    facts: dict[str, Any]


class IssuedOut(BaseModel):
    """A node's id and token: the token is shown this once, inside the install command too."""

    node_id: str
    name: str
    token: str
    install_command: str = Field(description="One line to paste on the node: installs and starts the agent.")


def issued_out(issued: IssuedToken, context: AppContext) -> IssuedOut:
    """The credentials with the one-line install command (for the API and the node pages)."""
    command = install_command(server=context.settings.public_url, node_id=issued.node_id, node_name=issued.name,
                              token=issued.token)
    return IssuedOut(node_id=issued.node_id, name=issued.name, token=issued.token, install_command=command)


def node_out(record: NodeRecord, hub: Hub) -> NodeOut:
    """A registered node with its live state from ``hub`` (for the API and the node pages)."""
    state = hub.state(record.name)
    return NodeOut(
        id=record.id, name=record.name, labels=json.loads(record.labels), revoked=record.revoked,
        online=state.online and not record.revoked, last_seen=state.last_seen or record.last_seen,
        connected_since=state.connected_since, peer=state.peer, running=state.running,
        agent_version=state.version or record.agent_version,
        facts=state.facts if state.facts is not None else json.loads(record.facts),
    )





@router.get("/nodes")
def list_nodes(session: ReaderDep, caller: Viewer, hub: HubDep) -> list[NodeOut]:
    """Registered nodes with their state: online now, last seen, agent version and facts."""
    return [node_out(r, hub) for r in list_registered(session)]


class NodeSummary(BaseModel):
    """How many nodes are registered, revoked and connected right now."""

    registered: int
    revoked: int
    online: int


@router.get("/nodes/summary")
def node_summary(session: ReaderDep, caller: Viewer, hub: HubDep) -> NodeSummary:
    """Counts only: cheap enough to poll with ten thousand nodes."""
    revoked = {name for name, gone in session.execute(select(NodeRecord.name, NodeRecord.revoked)) if gone}
    total = session.scalar(select(func.count()).select_from(NodeRecord)) or 0
    online = sum(1 for name in list(hub.links) if name not in revoked)
    return NodeSummary(registered=total, revoked=len(revoked), online=online)


@router.post("/nodes", status_code=status.HTTP_201_CREATED)
def register_node(
    body: NodeIn, session: SessionDep, caller: Admin, context: ContextDep, hub: HubDep
) -> IssuedOut:
    """Register a node; the response holds its token, which is never shown again."""
    try:
        issued = create_and_remember(session, hub, name=body.name, labels=body.labels, actor=caller.name)
    except NodeRegistryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return issued_out(issued, context)


@router.post("/nodes/{ref}/rotate")
def rotate(ref: str, session: SessionDep, caller: Admin, hub: HubDep, context: ContextDep) -> IssuedOut:
    """A new token for the node; the old one stops working at once (a connected agent is closed)."""
    try:
        issued = rotate_and_kick(session, hub, ref=ref, actor=caller.name)
    except NodeNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except NodeRegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return issued_out(issued, context)


@router.post("/nodes/{ref}/revoke")
def revoke(ref: str, session: SessionDep, caller: Admin, hub: HubDep) -> NodeOut:
    """Revoke the node: its token never authenticates again, and a connected agent is closed."""
    try:
        record = revoke_and_kick(session, hub, ref=ref, actor=caller.name)
    except NodeNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return node_out(record, hub)
