"""The JSON API (/api/...). Every route requires an API token (``Authorization: Bearer sqa_...``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from auth.models import ApiToken
from auth.service import TokenError, authenticate_token
from nodes.models import NodeRecord
from nodes.service import NodeNotFound, NodeRegistryError, create_node, list_registered, revoke_node, rotate_token
from storage.db import session_scope

bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    """A database session committed when the request succeeds."""
    with session_scope(request.app.state.context.db.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_token(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiToken:
    """The caller's API token, or 401."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED, "an API token is required: Authorization: Bearer sqa_... (squads token create)",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    try:
        return authenticate_token(session, credentials.credentials)
    except TokenError:
        raise unauthorized from None


TokenDep = Annotated[ApiToken, Depends(current_token)]
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
    last_seen: str | None
    agent_version: str | None
    facts: dict[str, Any]


class IssuedOut(BaseModel):
    """A node's id and token: the token is shown this once."""

    node_id: str
    name: str
    token: str


def _out(record: NodeRecord) -> NodeOut:
    return NodeOut(
        id=record.id, name=record.name, labels=json.loads(record.labels), revoked=record.revoked,
        last_seen=record.last_seen, agent_version=record.agent_version, facts=json.loads(record.facts),
    )


def _actor(token: ApiToken) -> str:
    return f"token:{token.name}"


@router.get("/nodes")
def list_nodes(session: SessionDep, token: TokenDep) -> list[NodeOut]:
    """Registered nodes with their state."""
    return [_out(r) for r in list_registered(session)]


@router.post("/nodes", status_code=status.HTTP_201_CREATED)
def register_node(body: NodeIn, session: SessionDep, token: TokenDep) -> IssuedOut:
    """Register a node; the response holds its token, which is never shown again."""
    try:
        issued = create_node(session, name=body.name, labels=body.labels, actor=_actor(token))
    except NodeRegistryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return IssuedOut(node_id=issued.node_id, name=issued.name, token=issued.token)


@router.post("/nodes/{ref}/rotate")
def rotate(ref: str, session: SessionDep, token: TokenDep) -> IssuedOut:
    """A new token for the node; the old one stops working at once."""
    try:
        issued = rotate_token(session, ref=ref, actor=_actor(token))
    except NodeNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except NodeRegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return IssuedOut(node_id=issued.node_id, name=issued.name, token=issued.token)


@router.post("/nodes/{ref}/revoke")
def revoke(ref: str, session: SessionDep, token: TokenDep) -> NodeOut:
    """Revoke the node: its token never authenticates again."""
    try:
        return _out(revoke_node(session, ref=ref, actor=_actor(token)))
    except NodeNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
