"""Pages: conversation transcripts (list, view, export) and the audit log (search, record, verify, export).

Everything shown came from users, commands or nodes: templates autoescape it and
the ``display_*`` filters show control, bidi and invisible characters as
``\\uXXXX``, as the command-line tools do. Every page only reads, on a read-only session.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, TextIO, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from squads.audit import chain, queries
from squads.audit.anchor import Checkpoints, read_checkpoints
from squads.audit.keys import settings_key
from squads.audit.models import AuditRecord, RecordKind
from squads.audit.verify import verify
from chat_server.deps import ReaderDep
from chat_server.principals import Viewer
from chat_server.signin import render, templates
from squads.textsafety import display
from transcripts import service as transcripts
from transcripts.export import to_json, to_markdown
from transcripts.models import ConversationRecord, Event, EventKind

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
Filter = Annotated[str, Query(max_length=300)]


def _stored_argv(value: str | None) -> str:
    """A stored argv column for people; junk written behind the log's back is shown, escaped, as is."""
    if value is None:
        return ""
    try:
        argv = json.loads(value)
    except ValueError:
        return display.display_text(value)
    return _argv(argv) if isinstance(argv, list) else display.display_text(value)


def _argv(argv: Any) -> str:
    """An argv as a JSON array in which nothing is invisible (anything else: its text, escaped)."""
    return display.display_argv([str(a) for a in argv]) if isinstance(argv, list) else display.display_text(str(argv))


def _shell(argv: Any) -> str:
    """An argv as the shell words one would type, on one line with nothing invisible."""
    return display.display_text(shlex.join(str(a) for a in argv) if isinstance(argv, list) else str(argv))


# The shared environment of every page; these names mean the same wherever they are used.
for _name, _filter in (("display_text", display.display_text), ("display_lines", display.display_lines),
                       ("display_argv", _argv), ("stored_argv", _stored_argv), ("shell", _shell)):
    templates.env.filters[_name] = _filter


def _query(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


# -- transcripts ----------------------------------------------------------------------------


@dataclass
class Item:
    """One block of the conversation as the chat shows it: a message, a tool card, an approval or an error.

    A tool card gathers a command's call, decision, output and approval request."""

    kind: str
    event: Event | None = None
    call: Event | None = None
    decision: Event | None = None
    output: Event | None = None
    approval: Event | None = None

    @property
    def argv(self) -> list[Any]:
        """The command of a tool card."""
        for part in (self.call, self.decision, self.approval):
            if part is not None and isinstance(part.data.get("argv"), list):
                return list(part.data["argv"])
        return []

    def field(self, name: str) -> str:
        """``agent``, ``node``, ... of a tool card, from whichever part carries it."""
        for part in (self.call, self.decision, self.approval):
            if part is not None and part.data.get(name):
                return str(part.data[name])
        return ""

    @property
    def output_text(self) -> str:
        """stdout then stderr, as the chat folds them."""
        data = self.output.data if self.output else {}
        return "\n".join(str(p) for p in (data.get("stdout"), data.get("stderr")) if p).rstrip()


_CARD_SLOTS = {EventKind.TOOL_CALL: "call", EventKind.DECISION: "decision", EventKind.TOOL_OUTPUT: "output",
               EventKind.APPROVAL_REQUESTED: "approval"}


def chat_items(events: list[Event]) -> list[Item]:
    """The events grouped as the chat shows them: a call, its decision, output and approval
    request form one card (an approved command's fresh decision comes before its call)."""
    items: list[Item] = []
    card: Item | None = None
    for event in events:
        slot = _CARD_SLOTS.get(event.kind)
        if slot is None:
            card = None
            if event.kind is not EventKind.TURN_COMPLETE:
                items.append(Item(kind=event.kind.value, event=event))
            continue
        if card is None or getattr(card, slot) is not None or (slot == "call" and card.output is not None):
            card = Item(kind="tool")
            items.append(card)
        setattr(card, slot, event)
    return items


def _download(body: str, filename: str, media_type: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _safe_name(conversation_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", conversation_id)[:64]


@router.get("/transcripts")
def transcripts_page(
    request: Request, caller: Viewer, session: ReaderDep,
    squad: Filter = "", node: Filter = "", actor: Filter = "", page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Conversations, most recent activity first, 50 a page, filtered by squad, node or actor."""
    found = transcripts.find_conversations(session, squad=squad or None, node=node or None, actor=actor or None,
                                           offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    filters = {"squad": squad, "node": node, "actor": actor}
    return render(
        request, "transcripts.html", principal=caller, conversations=found[:PAGE_SIZE], filters=filters, page=page,
        newer=f"/transcripts?{_query(**filters, page=page - 1)}" if page > 1 else None,
        older=f"/transcripts?{_query(**filters, page=page + 1)}" if len(found) > PAGE_SIZE else None,
    )


def _conversation(session: Session, conversation_id: str) -> tuple[ConversationRecord, list[Event]] | None:
    """The conversation and its events, or None when there is no such conversation."""
    try:
        record = transcripts.get_conversation(session, conversation_id)
    except transcripts.ConversationNotFound:
        return None
    return record, transcripts.load_events(session, conversation_id)


def _missing_conversation(request: Request, caller: Viewer, conversation_id: str) -> Response:
    return render(request, "transcript.html", 404, principal=caller, missing=conversation_id)


@router.get("/transcripts/{conversation_id}")
def transcript_page(request: Request, caller: Viewer, session: ReaderDep, conversation_id: str) -> Response:
    """One conversation as the chat showed it, with links to the audit records behind it."""
    found = _conversation(session, conversation_id)
    if found is None:
        return _missing_conversation(request, caller, conversation_id)
    record, events = found
    return render(request, "transcript.html", principal=caller, conversation=record, events=len(events),
                  items=chat_items(events), audit_link=f"/audit?{_query(conversation_id=record.id)}")


@router.get("/transcripts/{conversation_id}/export.md")
def transcript_markdown(request: Request, caller: Viewer, session: ReaderDep, conversation_id: str) -> Response:
    """The conversation as Markdown, as ``squads transcript export`` writes it."""
    found = _conversation(session, conversation_id)
    if found is None:
        return _missing_conversation(request, caller, conversation_id)
    body = to_markdown(*found)
    return _download(body, f"conversation-{_safe_name(found[0].id)}.md", "text/markdown; charset=utf-8")


@router.get("/transcripts/{conversation_id}/export.json")
def transcript_json(request: Request, caller: Viewer, session: ReaderDep, conversation_id: str) -> Response:
    """The conversation and its events as JSON, as ``squads transcript export -f json`` writes it."""
    found = _conversation(session, conversation_id)
    if found is None:
        return _missing_conversation(request, caller, conversation_id)
    body = to_json(*found)
    return _download(body, f"conversation-{_safe_name(found[0].id)}.json", "application/json")


# -- the audit log ----------------------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request, caller: Viewer, session: ReaderDep,
    kind: Filter = "", actor: Filter = "", squad: Filter = "", agent: Filter = "", node: Filter = "",
    decision: Filter = "", conversation_id: Filter = "", q: Filter = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The log, newest first, 50 a page (``before`` is the cursor), searchable; the chain's head on top."""
    filters = {"kind": kind, "actor": actor, "squad": squad, "agent": agent, "node": node, "decision": decision,
               "conversation_id": conversation_id, "q": q}
    query = queries.AuditQuery(**{k: v or None for k, v in filters.items() if k != "q"}, text=q or None)
    found = queries.search_records(session, query, before=before, limit=PAGE_SIZE)
    head_seq, head_hash = chain.head(session)
    newer = None if found.newer is None else f"/audit?{_query(**filters, before=found.newer or None)}"
    return render(
        request, "audit.html", principal=caller, records=found.records, filters=filters, before=before,
        kinds=[k.value for k in RecordKind], head_seq=head_seq, head_hash=head_hash,
        older=None if found.older is None else f"/audit?{_query(**filters, before=found.older)}", newer=newer,
    )


@router.get("/audit/verify")
def audit_verify_page(
    request: Request, caller: Viewer, session: ReaderDep, expect_head: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Recompute the whole chain (slow on a long log, hence its own page), against the server's signed
    checkpoints and optionally an anchored head. A checkpoint line that does not verify breaks it too."""
    settings = request.app.state.context.settings
    path = settings.effective_audit_checkpoint_file
    found = read_checkpoints(path, key=settings_key(settings)) if path.exists() else Checkpoints([], [])
    report = verify(session, expect_head=expect_head.strip() or None, anchors=found.anchors)
    if report.ok and found.problems:
        report = replace(report, ok=False, problem="; ".join(found.problems))
    return render(request, "audit_verify.html", principal=caller, report=report, expect_head=expect_head.strip())


@router.get("/audit/export.jsonl")
def audit_export(request: Request, caller: Viewer, since: Annotated[int, Query(ge=0)] = 0) -> Response:
    """Every record after ``since``, one JSON object a line, as ``squads audit export`` writes them.

    Written to a spooled file first (in memory up to 8 MB, then on disk), so a
    long log neither sits in memory whole nor holds a database session while a slow client reads."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="ascii")  # noqa: SIM115
    try:
        with request.app.state.context.db.readers() as session:
            queries.export_jsonl(session, cast(TextIO, spool), since_seq=since)  # a text file in all but name
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def chunks() -> Iterator[str]:
        with spool:
            while chunk := spool.read(64 << 10):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'})


@router.get("/audit/{seq}")
def audit_record_page(request: Request, caller: Viewer, session: ReaderDep, seq: str) -> Response:
    """One record, every column, with links to the records and the conversation it belongs to."""
    record = session.get(AuditRecord, int(seq)) if re.fullmatch(r"[0-9]{1,18}", seq) else None
    if record is None:
        return render(request, "audit_record.html", 404, principal=caller, missing=seq)
    fields = queries.record_as_dict(record)
    details = fields["details"]
    return render(
        request, "audit_record.html", principal=caller, record=fields, followups=queries.followups(session, record.seq),
        details=None if details is None else details if isinstance(details, str)
        else json.dumps(details, indent=2, ensure_ascii=False, sort_keys=True),
    )
