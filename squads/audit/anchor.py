"""Signed head checkpoints: the chain's head, anchored outside the database on a timer.

A valid but shorter chain (records removed from the end) or an older copy of
the database verifies on its own. A checkpoint is one JSON line
``{"seq", "head_hash", "at", "key_id", "signature"}``, the signature an HMAC
under a key derived from the audit key, appended to a file (and optionally sent
to syslog). ``squads audit verify`` reads the file and reports any checkpoint
the database no longer matches. ``squads serve`` writes one at start, every
``SQUADS_AUDIT_CHECKPOINT_S`` seconds and at shutdown; ``squads audit
checkpoint`` writes one by hand (e.g. from cron).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from squads.audit import keys
from squads.audit.chain import head
from squads.audit.verify import Anchor

CHECKPOINT_PURPOSE = "audit-checkpoint"
SYSLOG_IDENT = "squads-audit"
log = logging.getLogger(__name__)


def _signed_part(line: dict[str, Any]) -> bytes:
    return keys.canonical_json({name: line.get(name) for name in ("seq", "head_hash", "at", "key_id")})


def make_checkpoint(*, key: bytes, seq: int, head_hash: str, at: str | None = None) -> dict[str, Any]:
    """A signed checkpoint line (as a dict) for head ``(seq, head_hash)``."""
    line: dict[str, Any] = {"seq": seq, "head_hash": head_hash,
                            "at": at or datetime.now(UTC).isoformat(timespec="seconds"), "key_id": keys.key_id(key)}
    line["signature"] = keys.mac(key, CHECKPOINT_PURPOSE, _signed_part(line))
    return line


def _append_line(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: whole lines from concurrent writers never interleave; 0600: checkpoints say how big the log is.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_syslog(text: str) -> None:
    import syslog

    syslog.openlog(SYSLOG_IDENT, 0, syslog.LOG_AUTH)
    syslog.syslog(syslog.LOG_NOTICE, text)


def write_checkpoint(
    sessions: sessionmaker[Session], *, key: bytes, path: Path | None, to_syslog: bool = False
) -> dict[str, Any]:
    """Read the head, sign it, append it to ``path`` (and syslog); returns the checkpoint."""
    with sessions() as session:
        seq, head_hash = head(session)
    line = make_checkpoint(key=key, seq=seq, head_hash=head_hash)
    text = json.dumps(line, sort_keys=True, separators=(",", ":"))
    if path is not None:
        _append_line(path, text)
    if to_syslog:
        _to_syslog(text)
    return line


@dataclass(frozen=True)
class Checkpoints:
    """What a checkpoint file holds: the anchors it proves, and lines that prove nothing (problems)."""

    anchors: list[Anchor]
    problems: list[str]


def read_checkpoints(path: Path, *, key: bytes) -> Checkpoints:
    """Every checkpoint in ``path`` whose signature holds; a line that is not one is a problem."""
    anchors: list[Anchor] = []
    problems: list[str] = []
    mine = keys.key_id(key)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"line {number} of {path}"
            try:
                line = json.loads(raw)
                seq, head_hash = int(line["seq"]), str(line["head_hash"])
            except (ValueError, KeyError, TypeError):
                problems.append(f"{where} is not a checkpoint (expected JSON with seq, head_hash, at, signature)")
                continue
            if not keys.mac_ok(key, CHECKPOINT_PURPOSE, _signed_part(line), line.get("signature")):
                other = line.get("key_id")
                why = (f"it names key id {other}, this key is {mine}" if other != mine
                       else "it was edited or forged")  # fmt: skip
                problems.append(f"{where}: the signature does not hold under this audit key ({why})")
                continue
            anchors.append(Anchor(seq, head_hash, f"the checkpoint of {line.get('at')} ({where})"))
    return Checkpoints(anchors, problems)


async def _write_once(write: Callable[[], object]) -> None:
    try:
        await asyncio.to_thread(write)
    except Exception:
        # Anchoring must not take the server down; the next tick tries again.
        log.exception("could not write the audit checkpoint")


async def _every(write: Callable[[], object], interval_s: float) -> None:
    try:
        while True:
            await asyncio.sleep(interval_s)
            await _write_once(write)
    finally:
        await asyncio.shield(_write_once(write))


async def start_checkpoints(write: Callable[[], object], *, interval_s: float) -> asyncio.Task[None]:
    """Call ``write`` (in a thread) now, before returning; then every ``interval_s`` seconds in the
    returned task, and once more when that task is cancelled (at shutdown)."""
    await _write_once(write)
    return asyncio.create_task(_every(write, interval_s))
