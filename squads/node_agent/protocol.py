"""The agent link: the frames a node agent and the control plane exchange over one WebSocket.

The agent authenticates in the upgrade request (``Authorization: Bearer sqn_...``
and the node id in ``X-Squads-Node``), so a wrong or revoked token is refused
before a WebSocket exists. Then:

- text frames carry one JSON object whose ``type`` names it (the models below);
- binary frames carry output: one byte for the stream (``o`` stdout, ``e``
  stderr), the 32-character request id, then the bytes as the program wrote them.

Both ends reject what they do not expect (unknown types, unknown fields,
oversized frames) and close the connection; nothing is guessed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL = 1
AGENT_PATH = "/agent/v1/connect"
NODE_HEADER = "X-Squads-Node"
VERSION_HEADER = "X-Squads-Agent-Version"

MAX_TEXT_FRAME = 64 * 1024  # a run request, a result or the facts; nothing legitimate is bigger
MAX_CHUNK = 32 * 1024  # output bytes per binary frame
_ID_LEN = 32
MAX_BINARY_FRAME = 1 + _ID_LEN + MAX_CHUNK
REQUEST_ID = re.compile(r"[0-9a-f]{32}")

# Close codes (4000-4999 are the application's). The agent stops retrying on the fatal ones.
CLOSE_BAD_FRAME = 4400  # malformed, oversized or unexpected frame
CLOSE_REVOKED = 4403  # the node's token was revoked or rotated while it was connected (fatal)
CLOSE_HEARTBEAT = 4408  # no heartbeat for too long
CLOSE_REPLACED = 4409  # another agent connected as the same node (fatal for the older one)
CLOSE_GOING_AWAY = 1001  # the control plane is shutting down; reconnect
FATAL_CLOSE_CODES = frozenset({CLOSE_REVOKED, CLOSE_REPLACED})

RequestId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]  # anchored: pydantic patterns search
ShortText = Annotated[str, Field(max_length=4096)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Facts(BaseModel):
    """What the agent reports about its machine when it connects."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a newer agent may report more

    hostname: Annotated[str, Field(max_length=255)] = ""
    os: Annotated[str, Field(max_length=255)] = ""
    kernel: Annotated[str, Field(max_length=255)] = ""
    arch: Annotated[str, Field(max_length=64)] = ""
    python: Annotated[str, Field(max_length=64)] = ""
    agent_version: Annotated[str, Field(max_length=64)] = ""
    programs: Annotated[dict[Annotated[str, Field(max_length=64)], ShortText], Field(max_length=256)] = Field(
        default_factory=dict, description="Allowed programs found on the node, name -> absolute path."
    )
    policy: Annotated[str, Field(max_length=255)] = Field(default="", description="Which local policy the agent enforces.")


# -- agent -> control plane ------------------------------------------------------------------
class Hello(_Frame):
    """The first frame after the upgrade: protocol version and facts."""

    type: Literal["hello"] = "hello"
    protocol: int
    version: Annotated[str, Field(max_length=64)]
    facts: Facts


class Heartbeat(_Frame):
    type: Literal["heartbeat"] = "heartbeat"
    running: Annotated[int, Field(ge=0, le=10_000)] = 0


class Refused(_Frame):
    """The node's own policy refused a request; nothing ran."""

    type: Literal["refused"] = "refused"
    id: RequestId
    verdict: Literal["deny", "needs_approval"]
    rule: ShortText
    reason: ShortText


class Result(_Frame):
    """How a request ended; its output came before it in binary frames."""

    type: Literal["result"] = "result"
    id: RequestId
    exit_code: Annotated[int, Field(ge=-255, le=255)]
    duration_ms: Annotated[int, Field(ge=0)]
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    output_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    rule: ShortText = ""


class Duplicate(_Frame):
    """The request id was seen before; the agent did not run it again."""

    type: Literal["duplicate"] = "duplicate"
    id: RequestId


# -- control plane -> agent ------------------------------------------------------------------
class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    protocol: int
    node: Annotated[str, Field(max_length=64)]
    heartbeat_s: Annotated[float, Field(gt=0, le=3600)]


class Run(_Frame):
    """Run ``argv`` for ``agent`` (a squad agent) if the node's policy allows it too."""

    type: Literal["run"] = "run"
    id: RequestId
    agent: Annotated[str, Field(max_length=200)]
    argv: Annotated[list[ShortText], Field(min_length=1, max_length=256)]
    timeout_s: Annotated[float, Field(gt=0, le=86_400)]
    max_output: Annotated[int, Field(ge=0, le=64 * 1024 * 1024)]
    approved_by: Annotated[str | None, Field(max_length=200)] = None


class Cancel(_Frame):
    """The caller gave up on a request; the agent kills it if it still runs."""

    type: Literal["cancel"] = "cancel"
    id: RequestId


AgentFrame = Annotated[Hello | Heartbeat | Refused | Result | Duplicate, Field(discriminator="type")]
ServerFrame = Annotated[Welcome | Run | Cancel, Field(discriminator="type")]
AGENT_FRAMES: TypeAdapter[AgentFrame] = TypeAdapter(AgentFrame)
SERVER_FRAMES: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)

STREAMS = {b"o"[0]: "stdout", b"e"[0]: "stderr"}
_STREAM_BYTE = {"stdout": b"o", "stderr": b"e"}


def check_protocol(version: int) -> None:
    """Refuse a peer that speaks another protocol version, saying which."""
    if version != PROTOCOL:
        raise FrameError(f"protocol {version} is not supported (this side speaks {PROTOCOL}); upgrade the older side")


def clip(text: str, limit: int = 4096) -> str:
    """``text`` cut to fit a ``ShortText`` field."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FrameError(ValueError):
    """A frame broke the protocol; the message says how (for the log and the close reason)."""


def pack_chunk(request_id: str, stream: str, data: bytes) -> bytes:
    """A binary output frame."""
    return _STREAM_BYTE[stream] + request_id.encode("ascii") + data


def unpack_chunk(frame: bytes) -> tuple[str, str, bytes]:
    """``(request_id, stream, data)`` of a binary output frame, or ``FrameError``."""
    if len(frame) > MAX_BINARY_FRAME:
        raise FrameError(f"output frame of {len(frame)} bytes is over the {MAX_BINARY_FRAME}-byte limit")
    if len(frame) < 1 + _ID_LEN:
        raise FrameError("output frame too short")
    stream = STREAMS.get(frame[0])
    request_id = frame[1 : 1 + _ID_LEN].decode("ascii", errors="replace")
    if stream is None or not REQUEST_ID.fullmatch(request_id):
        raise FrameError("output frame with an unknown stream or a malformed request id")
    return request_id, stream, frame[1 + _ID_LEN :]


def parse_text(adapter: TypeAdapter[AgentFrame] | TypeAdapter[ServerFrame], text: str) -> object:
    """Validate a text frame with ``adapter``; ``FrameError`` says what was wrong, briefly."""
    if len(text) > MAX_TEXT_FRAME:
        raise FrameError(f"text frame of {len(text)} characters is over the {MAX_TEXT_FRAME} limit")
    try:
        return adapter.validate_json(text)
    except ValueError as exc:
        errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
        if any(e.get("type") == "union_tag_invalid" for e in errors):
            raise FrameError("unknown message type") from None
        if any(e.get("type") == "union_tag_not_found" for e in errors):
            raise FrameError("message without a type") from None
        first = errors[0] if errors else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        raise FrameError(f"malformed message: {where + ': ' if where else ''}{first.get('msg')}"[:200]) from None
