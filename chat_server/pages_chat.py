"""The chat: pick a squad and nodes, talk, watch each command as a card, approve held ones.

A message or an approval runs one turn of the conversation runtime. With
``Accept: text/event-stream`` (the page's script) the events stream back as
server-sent events, each carrying a server-rendered, escaped HTML fragment;
without it (no script) the turn runs and the browser is sent back to the page.
One turn at a time per conversation: a second one gets 409, never a race.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from chat_server.deps import ContextDep, HubDep, process_wide
from chat_server.principals import Approver, Engineer, Principal, Viewer
from chat_server.signin import render, templates
from squads.nodes.hub import Hub
from squads.nodes.service import unknown_nodes_message
from squads.approvals import pending_approvals
from squads.context import AppContext
from squads.runtime import ApprovalError, Conversation, RuntimeConfig, approval_expired
from squads.storage.db import session_scope
from transcripts import service as transcripts
from transcripts.models import ConversationRecord, Event, EventKind
from squads.accounts.models import Role, User

router = APIRouter(include_in_schema=False)
CALL_PARTS = (EventKind.DECISION, EventKind.TOOL_OUTPUT)
MAX_MESSAGE = 8000


# -- runtime plumbing ------------------------------------------------------------------------
def _config(context: AppContext, hub: Hub, allowed: list[str] | None) -> RuntimeConfig:
    config = context.runtime_config(hub=hub)
    if allowed:
        # The nodes picked for this conversation are the only ones it may touch.
        config.nodes = {n: c for n, c in config.nodes.items() if n in allowed}
    return config


def _open(context: AppContext, hub: Hub, cid: str, actor: str) -> Conversation:
    with context.db.readers() as session:
        try:
            record = transcripts.get_conversation(session, cid)
        except transcripts.ConversationNotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no conversation {cid}") from None
        allowed = transcripts.load_state(session, cid).get("nodes")
    squad = context.squads.get(record.squad)
    if squad is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"squad {record.squad} is no longer installed")
    return Conversation(config=_config(context, hub, allowed), squad=squad, conversation_id=cid, actor=actor)


class _Turns:
    """One running turn per conversation in this process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy: set[str] = set()

    def claim(self, cid: str) -> None:
        with self._guard:
            if cid in self._busy:
                raise HTTPException(status.HTTP_409_CONFLICT, "a turn is already running in this conversation")
            self._busy.add(cid)

    def release(self, cid: str) -> None:
        with self._guard:
            self._busy.discard(cid)


def _turns(request: Request) -> _Turns:
    return process_wide(request, "chat_turns", _Turns)


# -- rendering -------------------------------------------------------------------------------
def blocks(events: list[Event]) -> list[dict[str, Any]]:
    """Events grouped for the page: a tool call with its decision and output is one card."""
    out: list[dict[str, Any]] = []
    for event in events:
        if event.kind in CALL_PARTS and out and out[-1]["kind"] == "call" and event.kind.value not in out[-1]:
            out[-1][event.kind.value] = event
        elif event.kind is EventKind.TOOL_CALL:
            out.append({"kind": "call", "call": event})
        elif event.kind is EventKind.DECISION:
            out.append({"kind": "call", "call": None, "decision": event})  # held or refused without a call event
        elif event.kind is not EventKind.TURN_COMPLETE:
            out.append({"kind": "event", "event": event})
    return out


def _approvers(context: AppContext) -> list[str]:
    with context.db.readers() as session:
        rows = session.scalars(select(User.username).where(
            User.role.in_((Role.APPROVER.value, Role.ADMIN.value)), User.disabled.is_(False)).order_by(User.username))
        return list(rows)


def _view(request: Request, caller: Principal, context: AppContext, cid: str) -> dict[str, Any]:
    with context.db.readers() as session:
        record = transcripts.get_conversation(session, cid)
        events = transcripts.load_events(session, cid)
        state = transcripts.load_state(session, cid)
    view = _base_view(caller, context, record=record, approvals={a["id"]: a for a in state.get("approvals", [])})
    view.update(blocks=blocks(events), nodes=state.get("nodes") or [record.node],
                can_chat=caller.role.allows(Role.ENGINEER))
    return {**view, "view": view}


def _base_view(caller: Principal, context: AppContext, *, record: ConversationRecord | None,
               approvals: dict[str, Any]) -> dict[str, Any]:
    """What the chat's templates need to draw events and approval buttons (page and stream alike)."""
    return {"principal": caller, "record": record, "approvals": approvals, "approvers": _approvers(context),
            "now": datetime.now(UTC), "expired": approval_expired, "can_approve": caller.role.allows(Role.APPROVER)}


def _fragment(request: Request, event: Event, view: dict[str, Any]) -> str:
    macros = templates.get_template("_chat.html").module
    approval = view["approvals"].get(str(event.data.get("id"))) if event.kind is EventKind.APPROVAL_REQUESTED else None
    return str(macros.event(event, view, approval))  # type: ignore[attr-defined]


def _stream(request: Request, context: AppContext, caller: Principal, cid: str, turn: Iterator[Event]) -> Response:
    """Run the turn on a thread of its own and stream its events: a browser that goes away
    mid-turn does not cut the turn short (its commands and records complete regardless)."""
    turns = _turns(request)
    out: queue.Queue[Event | BaseException | None] = queue.Queue()

    def work() -> None:
        try:
            for event in turn:
                out.put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the stream, which says what went wrong
            out.put(exc)
        finally:
            turns.release(cid)
            out.put(None)

    threading.Thread(target=work, name=f"turn-{cid[:8]}", daemon=True).start()
    held: dict[str, Any] = {}
    view = _base_view(caller, context, record=None, approvals=held)

    def sse() -> Iterator[bytes]:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                text = item.detail if isinstance(item, HTTPException) else str(item)
                if not isinstance(item, (ApprovalError, HTTPException)):
                    text = f"internal error: {item!r}"
                yield f"event: problem\ndata: {json.dumps({'text': str(text)})}\n\n".encode()
                continue
            if item.kind is EventKind.APPROVAL_REQUESTED:
                held[str(item.data["id"])] = item.data
            payload = {"kind": item.kind.value, "html": _fragment(request, item, view)}
            yield f"event: event\ndata: {json.dumps(payload)}\n\n".encode()
        yield b"event: done\ndata: {}\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _run(request: Request, context: AppContext, caller: Principal, cid: str, turn: Iterator[Event]) -> Response:
    """Stream the turn to the page's script, or run it whole and send the browser back."""
    if "text/event-stream" in request.headers.get("accept", ""):
        return _stream(request, context, caller, cid, turn)
    try:
        for _ in turn:
            pass
    except ApprovalError as exc:
        return render(request, "chat.html", 409, **_view(request, caller, context, cid), error=str(exc))
    finally:
        _turns(request).release(cid)
    return RedirectResponse(f"/chat/{cid}", status_code=303)


# -- routes ----------------------------------------------------------------------------------
@router.get("/chat")
def chat_index(request: Request, caller: Engineer, context: ContextDep, hub: HubDep) -> Response:
    """Start a conversation: a squad, the nodes it may use, and the first message."""
    config = context.runtime_config(hub=hub)
    nodes = [{"name": n, "online": hub.online(n) or n in context.nodes or n in context.lab_nodes,
              "kind": "this machine" if n in context.nodes else ("simulated lab" if n in context.lab_nodes else None)}
             for n in sorted(config.nodes)]
    with context.db.readers() as session:
        recent = list(session.scalars(select(ConversationRecord).order_by(ConversationRecord.updated_at.desc())
                                      .limit(20)))
    return render(request, "chat_index.html", principal=caller, squads=sorted(context.squads.values(),
                  key=lambda s: s.name), nodes=nodes, recent=recent)


@router.post("/chat")
def chat_start(
    request: Request, caller: Engineer, context: ContextDep, hub: HubDep,
    squad: Annotated[str, Form(max_length=100)], nodes: Annotated[list[str], Form(max_length=64)],
    message: Annotated[str, Form(max_length=MAX_MESSAGE)] = "",
) -> Response:
    """Open a conversation on the picked nodes (the first is where it starts) and send the first message."""
    if squad not in context.squads:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown squad {squad!r}")
    config = _config(context, hub, nodes)
    unknown = sorted(set(nodes) - set(config.nodes))
    if not nodes or unknown:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, unknown_nodes_message(unknown, config.nodes) if unknown
                            else "pick at least one node")
    conversation = Conversation.start(config=config, squad=context.squads[squad], node=nodes[0], actor=caller.name)
    with session_scope(context.db.sessions) as session:
        state = transcripts.load_state(session, conversation.id)
        transcripts.save_state(session, conversation.id, {**state, "nodes": nodes}, turns=0)
    if not message.strip():
        return RedirectResponse(f"/chat/{conversation.id}", status_code=303)
    _turns(request).claim(conversation.id)
    return _run(request, context, caller, conversation.id, conversation.handle(message))


@router.get("/chat/{cid}")
def chat_page(request: Request, cid: str, caller: Viewer, context: ContextDep) -> Response:
    """The conversation so far, with the message box (engineers) and approval buttons (approvers)."""
    try:
        view = _view(request, caller, context, cid)
    except transcripts.ConversationNotFound:
        return render(request, "chat.html", 404, principal=caller, error=f"No conversation {cid}.", record=None)
    return render(request, "chat.html", **view)


@router.post("/chat/{cid}/messages")
def chat_message(
    request: Request, cid: str, caller: Engineer, context: ContextDep, hub: HubDep,
    text: Annotated[str, Form(min_length=1, max_length=MAX_MESSAGE)],
) -> Response:
    """One user message: the squad's turn, streamed or run whole."""
    conversation = _open(context, hub, cid, caller.name)
    _turns(request).claim(cid)
    return _run(request, context, caller, cid, conversation.handle(text))


@router.post("/chat/{cid}/approvals/{approval_id}")
def chat_approval(
    request: Request, cid: str, approval_id: str, caller: Approver, context: ContextDep, hub: HubDep,
    decision: Annotated[str, Form(pattern="^(approve|deny)$")],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Approve (the command then runs through the normal path) or deny a held command."""
    conversation = _open(context, hub, cid, caller.name)
    _turns(request).claim(cid)
    turn = conversation.resolve_approval(approval_id, approver=caller.name, approved=decision == "approve",
                                         reason=reason or None)
    return _run(request, context, caller, cid, turn)


@router.get("/approvals")
def approvals_page(request: Request, caller: Viewer, context: ContextDep) -> Response:
    """Held commands still waiting, across conversations, newest first; approvers can act here."""
    with context.db.readers() as session:
        pending = pending_approvals(session, now=datetime.now(UTC), ttl_s=context.settings.approval_ttl_s)
    return render(request, "approvals.html", principal=caller, pending=pending, approvers=_approvers(context),
                  can_approve=caller.role.allows(Role.APPROVER))
