"""Pages: registered nodes with their live state, configured nodes; admins create, rotate and revoke.

A node's token is shown once, on the page that answers the create or rotate
POST (never stored, never put in a URL, never cached by the browser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from squads.textsafety.display import display_text
from chat_server.deps import ContextDep, HubDep, ReaderDep, SessionDep
from chat_server.principals import Admin, Principal, Viewer
from chat_server.routes import issued_out, node_out
from chat_server.signin import render
from squads.nodes.hub import Hub
from squads.nodes.tables import NodeRecord
from squads.nodes.service import (
    IssuedToken,
    NodeNotFound,
    NodeRegistryError,
    create_and_remember,
    find_node,
    list_registered,
    parse_labels,
    revoke_and_kick,
    rotate_and_kick,
)
from squads.context import AppContext
from squads.accounts.models import Role

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class NodeRow:
    """One registered node as the page shows it; agent-reported text is made visible-safe."""

    name: str
    id: str
    state: str  # online, offline or revoked
    last_seen: str
    agent_version: str
    labels: list[str]
    hostname: str
    os: str
    programs: int


def _text(value: Any) -> str:
    # Facts come from the agent: escape bidi/invisible characters that could disguise them.
    return display_text(str(value)) if value not in (None, "") else ""


def _row(record: NodeRecord, hub: Hub) -> NodeRow:
    node = node_out(record, hub)
    facts, programs = node.facts, node.facts.get("programs")
    state = "revoked" if node.revoked else "online" if node.online else "offline"
    return NodeRow(
        name=node.name, id=node.id, state=state, last_seen=node.last_seen or "never",
        agent_version=_text(node.agent_version), labels=[_text(f"{k}={v}") for k, v in sorted(node.labels.items())],
        hostname=_text(facts.get("hostname")), os=_text(facts.get("os")),
        programs=len(programs) if isinstance(programs, dict) else 0,
    )


def _page(
    request: Request, session: Session, hub: Hub, context: AppContext, caller: Principal,
    status_code: int = 200, **extra: Any,
) -> Response:
    rows = [_row(r, hub) for r in list_registered(session)]
    registered = {r.name for r in rows}
    configured = [
        {"name": n.name, "labels": [f"{k}={v}" for k, v in sorted(n.labels.items())], "shadowed": n.name in registered}
        for n in context.nodes.values()
    ]
    return render(
        request, "nodes.html", status_code, principal=caller, rows=rows, configured=configured,
        online=sum(r.state == "online" for r in rows), is_admin=caller.role.allows(Role.ADMIN), **extra,
    )


def _issued_page(request: Request, caller: Principal, context: AppContext, issued: IssuedToken, action: str) -> Response:
    response = render(request, "node_issued.html", principal=caller, issued=issued_out(issued, context),
                      action=action, server=context.settings.public_url)
    # The token is on this page only: no browser or proxy may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/nodes")
def nodes_page(
    request: Request, session: ReaderDep, caller: Viewer, hub: HubDep, context: ContextDep, revoked: str = ""
) -> Response:
    """Registered nodes (online or not, last seen, agent, labels, facts) and configured nodes."""
    notice = None
    if revoked:
        # Only a true statement: a crafted link cannot make the page claim a revocation.
        try:
            if find_node(session, revoked[:64]).revoked:
                notice = f"Node {revoked[:64]} is revoked: its token no longer works and its agent was disconnected."
        except NodeNotFound:
            pass
    return _page(request, session, hub, context, caller, notice=notice)


@router.post("/nodes")
def create_node_page(
    request: Request, session: SessionDep, caller: Admin, hub: HubDep, context: ContextDep,
    name: Annotated[str, Form(max_length=200)] = "", labels: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Register a node and show its install command and token, this once."""
    try:
        issued = create_and_remember(session, hub, name=name.strip(), labels=parse_labels(labels), actor=caller.name)
    except NodeRegistryError as exc:
        session.rollback()
        return _page(request, session, hub, context, caller, 400, error=str(exc), form_name=name, form_labels=labels)
    return _issued_page(request, caller, context, issued, "registered")


@router.post("/nodes/{ref}/rotate")
def rotate_page(
    request: Request, ref: str, session: SessionDep, caller: Admin, hub: HubDep, context: ContextDep
) -> Response:
    """A new token for the node, shown this once; the old one stops working and its agent is disconnected."""
    try:
        issued = rotate_and_kick(session, hub, ref=ref, actor=caller.name)
    except NodeNotFound as exc:
        return _page(request, session, hub, context, caller, 404, error=str(exc))
    except NodeRegistryError as exc:
        return _page(request, session, hub, context, caller, 409, error=str(exc))
    return _issued_page(request, caller, context, issued, "rotated")


@router.post("/nodes/{ref}/revoke")
def revoke_page(
    request: Request, ref: str, session: SessionDep, caller: Admin, hub: HubDep, context: ContextDep
) -> Response:
    """Revoke the node for good and disconnect its agent, then back to the list."""
    try:
        record = revoke_and_kick(session, hub, ref=ref, actor=caller.name)
    except NodeNotFound as exc:
        return _page(request, session, hub, context, caller, 404, error=str(exc))
    return RedirectResponse(f"/nodes?revoked={record.name}", status_code=303)
