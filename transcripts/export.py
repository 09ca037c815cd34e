"""Transcripts as Markdown (for people and incident records) and JSON (for machines).

Everything exported was redacted when it was stored; the Markdown shows each
command in a code block with its decision and folds its output, so a long
conversation stays readable.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from typing import Any

from squads.textsafety.display import display_lines
from transcripts.models import ConversationRecord, Event, EventKind

def _shell_words(argv: list[str]) -> str:
    return shlex.join(argv)


def _prose(text: str) -> str:
    """User and squad text: visible characters, and no raw HTML (a log line quoted in a reply
    must not become an <img onerror> in whatever renders the export)."""
    return html.escape(display_lines(text), quote=False)


def _fenced(text: str, info: str = "text") -> str:
    # A fence longer than any run of backticks inside keeps command output from closing the block.
    body = display_lines(text.rstrip())
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def to_markdown(conversation: ConversationRecord, events: list[Event]) -> str:
    """The conversation as Markdown: messages, commands in code blocks, outputs folded."""
    lines = [
        f"# {_prose(conversation.title) or 'Conversation'}",
        "",
        f"- Conversation: `{conversation.id}`",
        f"- Squad: {conversation.squad}; node: {_prose(conversation.node)}; started by: {_prose(conversation.actor or 'unknown')}",
        f"- Started: {conversation.created_at}; turns: {conversation.turns}",
        "",
    ]
    call: dict[str, Any] = {}
    for event in events:
        at = event.at.strftime("%H:%M:%S")
        audit = f" (audit #{event.audit_seq})" if event.audit_seq else ""
        if event.kind is EventKind.USER_MESSAGE:
            lines += [f"## {at} You", "", _prose(event.text), ""]
        elif event.kind is EventKind.ASSISTANT_MESSAGE:
            lines += [f"**Squad** ({at}):", "", _prose(event.text), ""]
        elif event.kind is EventKind.TOOL_CALL:
            call = dict(event.data)
            lines += [_fenced(f"$ {_shell_words(call['argv'])}", "console"),
                      f"on `{_prose(call['node'])}` as `{_prose(call['agent'])}`", ""]
        elif event.kind is EventKind.DECISION:
            lines += [f"Policy: **{_prose(str(event.data.get('decision')))}**{audit}: {_prose(str(event.data.get('reason')))}", ""]
        elif event.kind is EventKind.TOOL_OUTPUT:
            output = "\n".join(p for p in (event.data.get("stdout", ""), event.data.get("stderr", "")) if p)
            count = len(output.splitlines())
            summary = f"exit code {event.data.get('exit_code')}, {event.data.get('duration_ms')} ms, {count} lines{audit}"
            lines += ["<details>", f"<summary>Output: {summary}</summary>", "", _fenced(output or "(no output)"), "", "</details>", ""]
        elif event.kind is EventKind.APPROVAL_REQUESTED:
            lines += [f"Held for approval, request {_prose(str(event.data.get('id')))}{audit}:",
                      _fenced(_shell_words(event.data.get("argv", [])), "console"), ""]
        elif event.kind is EventKind.APPROVAL_RESOLVED:
            lines += [f"Approval {_prose(str(event.data.get('id')))} {_prose(str(event.data.get('status')))} by "
                      f"{_prose(str(event.data.get('by')))}{audit}", ""]
        elif event.kind is EventKind.ERROR:
            lines += [f"> Error: {_prose(event.text)}", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conversation: ConversationRecord, events: list[Event]) -> str:
    """The conversation and every event, in order, as JSON."""
    document = {
        "conversation": {
            "id": conversation.id, "squad": conversation.squad, "node": conversation.node,
            "actor": conversation.actor, "title": conversation.title, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "turns": conversation.turns,
        },
        "events": [e.model_dump(mode="json") for e in events],
    }
    return json.dumps(document, indent=2)
