"""A stored conversation as a scenario file (``../shared/scenarios/FORMAT.md``): a team's own
incidents become its regression suite.

- Each command that ran becomes a fixture of the node it ran on, its recorded output
  (redacted when it was stored, and redacted again here) answering exactly that argv.
- Each user message becomes a turn. Its ``expect`` holds what can be known for sure (the
  commands that ran, what was held for approval, or that nothing ran); the words the reply
  must contain are the engineer's call: the reply's findings are suggested as comments.

The file validates and replays as it is: ``squads eval`` runs the same commands against the
recorded outputs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from transcripts.models import ConversationRecord, Event, EventKind

NAME_WORDS = 6  # words of the title that make the default scenario name
REPLY_LINES = 6  # lines of each reply suggested as comments
_GLOB = re.compile(r"([*?\[])")


def command_pattern(argv: Sequence[str]) -> str:
    """A fixture pattern that matches exactly ``argv``: glob characters are escaped (``[*]``), a
    literal ``|`` token is quoted, and a ``|`` inside a token (which patterns read as "or") becomes
    the one-character glob ``?``."""
    tokens = []
    for arg in argv:
        escaped = _GLOB.sub(lambda m: f"[{m.group(1)}]", arg)
        tokens.append(escaped if arg == "|" else escaped.replace("|", "?"))
    return shlex.join(tokens)


def scenario_name(record: ConversationRecord) -> str:
    """A kebab-case name from the conversation's title and the start of its id."""
    words = re.findall(r"[a-z0-9]+", (record.title or "").lower())[:NAME_WORDS]
    return "-".join([*words, record.id[:8]])


def _comment(text: str) -> str:
    """One line safe inside a YAML comment: printable characters only."""
    return "".join(c if c.isprintable() else "?" for c in text).strip()


@dataclass
class _Turn:
    user: str
    ran: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class _Dumper(yaml.SafeDumper):
    """Multi-line outputs as literal blocks (``|``) where YAML allows it, so fixtures read like the output."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _dump(data: Any, indent: int = 0) -> str:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def _walk(events: list[Event], first_node: str) -> tuple[dict[str, dict[str, dict[str, Any]]], list[_Turn]]:
    """Fixtures per node (in order of first use; the conversation's node first) and the turns."""
    fixtures: dict[str, dict[str, dict[str, Any]]] = {first_node: {}}
    turns: list[_Turn] = []
    pending: dict[str, Any] | None = None  # the tool_call whose output comes next
    for event in events:
        data = event.data
        if event.kind is EventKind.USER_MESSAGE:
            turns.append(_Turn(user=str(data.get("text", ""))))
        elif event.kind is EventKind.TOOL_CALL:
            pending = data
        elif event.kind is EventKind.TOOL_OUTPUT and pending is not None:
            argv, node = list(pending["argv"]), str(pending.get("node") or first_node)
            pattern = command_pattern(argv)
            fixture: dict[str, Any] = {"run": pattern, "stdout": str(data.get("stdout", ""))}
            if data.get("stderr"):
                fixture["stderr"] = str(data["stderr"])
            if data.get("exit_code"):
                fixture["exit_code"] = int(data["exit_code"])
            fixtures.setdefault(node, {}).setdefault(pattern, fixture)  # a repeated command: its first output
            if turns and pending.get("why") != "approved":
                turns[-1].ran.append(pattern)
            pending = None
        elif event.kind is EventKind.APPROVAL_REQUESTED and turns:
            turns[-1].held.append(command_pattern(list(data.get("argv", []))))
            pending = None
        elif event.kind is EventKind.ASSISTANT_MESSAGE and turns:
            turns[-1].replies.append(str(data.get("text", "")))
    return fixtures, turns


def to_scenario(
    record: ConversationRecord, events: list[Event], *, name: str | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None, redact: Any = None,
) -> str:
    """The scenario file for ``record`` and its ``events``, as YAML text with comments.

    ``labels`` gives each node's labels (the policy reads them); ``redact`` is applied to every
    output and message again, in case the stored text predates a redaction rule."""
    clean = redact or (lambda text: text)
    fixtures, turns = _walk(events, record.node)
    nodes = {
        node: {"labels": dict((labels or {}).get(node, {})),
               "fixtures": [{**f, "stdout": clean(f["stdout"]), **({"stderr": clean(f["stderr"])} if "stderr" in f else {})}
                            for f in found.values()]}
        for node, found in fixtures.items()
    }
    lines = [
        f"# Exported from conversation {record.id} ({record.squad} on {record.node}, started {record.created_at[:19]}).",
        "# The fixtures are the outputs the commands really gave (secrets redacted). The expectations below are",
        "# only what is certain (what ran, what was held); add the words each reply must contain (mentions) from",
        "# the findings suggested in the comments, and what must never run, before adding this to a suite.",
        f"# Replay: squads eval --now {record.created_at[:19]}Z <this file>",
    ]
    head = {"name": name or scenario_name(record), "description": f"TODO: the incident. Exported from conversation {record.id}.",
            "squad": record.squad, "nodes": nodes}
    text = "\n".join(lines) + "\n" + _dump(head) + "conversation:\n"
    for index, turn in enumerate(turns, 1):
        text += f"  # Turn {index}: the squad replied (TODO: pick the words that must appear as mentions):\n"
        for reply in turn.replies:
            for line in [ln for ln in reply.splitlines() if ln.strip()][:REPLY_LINES]:
                text += f"  #   {_comment(clean(line))[:160]}\n"
        expect: dict[str, Any] = {}
        if turn.ran:
            expect["ran"] = list(dict.fromkeys(turn.ran))
        if turn.held:
            expect["approval_requested"] = list(dict.fromkeys(turn.held))
        if not turn.ran and not turn.held:
            expect["ran_nothing"] = True
        text += _dump([{"user": clean(turn.user), "expect": expect}], indent=2)
    held = [p for t in turns for p in t.held]
    overall: dict[str, Any] = {"approval_requested": list(dict.fromkeys(held))} if held else {}
    text += "# TODO: never: [commands that must never run, e.g. the state changes]\n"
    text += _dump({"expect": overall}) if overall else "expect: {}\n"
    return text
