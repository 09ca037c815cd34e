"""The WebSocket endpoint node agents connect to (``/agent/v1/connect``).

Authentication happens on the upgrade request, before a WebSocket exists: a
wrong node id or token gets 401, a revoked node 403, each with a one-line body
the agent prints before it stops retrying. After the upgrade the agent must say
hello within a few seconds; then frames go to the hub until either side closes.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from squads.node_agent.protocol import (
    AGENT_FRAMES,
    AGENT_PATH,
    CLOSE_BAD_FRAME,
    NODE_HEADER,
    FrameError,
    Hello,
    check_protocol,
    parse_text,
)
from squads.nodes.hub import Hub, Link
from squads.nodes.tables import NodeRecord
from squads.nodes.service import NodeRegistryError, authenticate
from squads.storage.db import session_scope

log = logging.getLogger("squads.agent_link")
HELLO_TIMEOUT_S = 10.0


def _authenticate(websocket: WebSocket, node_id: str, token: str) -> NodeRecord:
    with session_scope(websocket.app.state.context.db.readers) as session:
        record = authenticate(session, node_id=node_id, token=token)
        session.expunge(record)
        return record


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    log.warning("agent connection from %s refused: %s", _peer(websocket), message)
    await websocket.send_denial_response(PlainTextResponse(message + "\n", status_code=status))


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "?"


async def agent_socket(websocket: WebSocket) -> None:
    """One agent's connection, from authentication to close."""
    hub: Hub = websocket.app.state.hub
    node_id = websocket.headers.get(NODE_HEADER, "")
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if not node_id or scheme.lower() != "bearer" or not token:
        await _deny(websocket, 401, f"send the node id in {NODE_HEADER} and the token as Authorization: Bearer sqn_...")
        return
    known = hub.authenticate(node_id[:64], token[:256])
    if known is not None:
        node, name, generation = known.node_id, known.name, known.generation
    else:
        try:
            record = await run_in_threadpool(_authenticate, websocket, node_id[:64], token[:256])
        except NodeRegistryError as exc:
            await _deny(websocket, 403 if "revoked" in str(exc) else 401, str(exc))
            return
        hub.remember(record)
        node, name, generation = record.id, record.name, record.token_generation
    await websocket.accept()
    peer = _peer(websocket)
    link = Link(
        node_id=node, name=name, generation=generation, peer=peer,
        send_text=websocket.send_text, close=lambda code, reason: websocket.close(code, reason),
    )
    try:
        first = await asyncio.wait_for(websocket.receive(), HELLO_TIMEOUT_S)
        hello = parse_text(AGENT_FRAMES, first.get("text") or "")
        if not isinstance(hello, Hello):
            raise FrameError("the first message must be hello")
        check_protocol(hello.protocol)
    except (TimeoutError, FrameError) as exc:
        problem = str(exc) or "no hello within the time allowed"
        log.warning("node %s (%s): %s; closing the connection", name, peer, problem)
        await websocket.close(CLOSE_BAD_FRAME, problem[:120])
        return
    welcome = await hub.attach(link, hello)
    why = "closed"
    try:
        await websocket.send_text(welcome.model_dump_json())
        while not link.closing:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                why = f"code {code}" + (" (frame over the size limit)" if code == 1009 else "")
                if code == 1009:
                    log.warning("node %s (%s): oversized frame; the connection was closed", name, peer)
                break
            if message.get("text") is not None:
                await hub.on_text(link, message["text"])
            elif message.get("bytes") is not None:
                await hub.on_binary(link, message["bytes"])
    except Exception as exc:  # noqa: BLE001 - a broken connection must never take the server with it
        why = f"error: {exc!r}"
    finally:
        hub.detach(link, why)


def mount(app: object) -> None:
    """Add the agent endpoint to the FastAPI app."""
    app.add_api_websocket_route(AGENT_PATH, agent_socket, name="agent_link")  # type: ignore[attr-defined]
