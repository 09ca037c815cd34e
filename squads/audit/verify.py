"""Recomputing the audit chain: hashes, links, MACs under the audit key, and anchors kept elsewhere.

The SHA-256 chain shows an altered, removed or inserted record to anyone; the
MAC shows a record rewritten (and rehashed) by someone without the key; anchors
(signed checkpoints, ``--expect-head``) show records removed from the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.orm import Session

from squads.audit import keys
from squads.audit.models import GENESIS_HASH, HASHED_FIELDS, AuditRecord, RecordKind

RECORD_PURPOSE = "audit-record"
_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]
_SEAL = RecordKind.CHAIN_KEYED.value


@dataclass(frozen=True)
class Anchor:
    """A ``(seq, hash)`` kept outside the database; ``source`` names it for a person."""

    seq: int
    hash: str
    source: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    ``head_seq``/``head_hash`` are the last record verified intact (the real
    head when ``ok``); ``problem`` is a sentence for a person, None when ok.
    ``sealed_records`` counts records written before the chain was keyed, which
    only the ``chain_keyed`` record's MAC vouches for; ``anchors_checked`` the
    anchors (checkpoints) the log was compared with."""

    ok: bool
    records_checked: int
    head_seq: int
    head_hash: str
    first_broken_seq: int | None = None
    problem: str | None = None
    sealed_records: int = 0
    anchors_checked: int = 0


def _stream(source: Session | Connection, stmt: Any, batch: int) -> Iterable[Any]:
    # yield_per streams (a server-side cursor on PostgreSQL) instead of
    # materialising the whole log.
    result = source.execute(stmt.execution_options(yield_per=batch))
    try:
        yield from result
    finally:
        result.close()


def _gap(last_seq: int, seq: int) -> str:
    missing = f"record {last_seq + 1} is" if seq == last_seq + 2 else f"records {last_seq + 1}-{seq - 1} are"
    where = f"seq jumps from {last_seq} to {seq}" if last_seq else f"the log starts at seq {seq}"
    return f"{missing} missing ({where})"


def _walk(rows: Iterable[Any], key: bytes, anchors: Sequence[Anchor]) -> VerifyReport:
    names = HASHED_FIELDS
    width = len(names)
    i_seq, i_prev, i_kind = names.index("seq"), names.index("prev_hash"), names.index("kind")
    by_seq: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        by_seq.setdefault(anchor.seq, []).append(anchor)
    checked, last_seq, last_hash = 0, 0, GENESIS_HASH
    unkeyed, keyed = 0, False

    def broken(seq: int, problem: str) -> VerifyReport:
        return VerifyReport(False, checked, last_seq, last_hash, seq, problem, unkeyed if keyed else 0, len(anchors))

    for row in rows:
        seq, stored, mac = row[i_seq], row[width], row[width + 1]
        if seq != last_seq + 1:
            return broken(last_seq + 1, _gap(last_seq, seq))
        canonical = keys.canonical_json(dict(zip(names, row[:width], strict=True)))
        if hashlib.sha256(canonical).hexdigest() != stored:
            return broken(seq, f"record {seq}: stored hash does not match its contents (altered after it was written)")
        if row[i_prev] != last_hash:
            before = f"record {last_seq}'s hash" if last_seq else "the genesis hash"
            return broken(seq, f"record {seq}: prev_hash does not match {before}")
        if mac is None:
            if keyed:
                return broken(seq, f"record {seq} has no MAC though the records before it have one: "
                                   "it was written (or rewritten) without the audit key")  # fmt: skip
            unkeyed += 1
        else:
            if not keys.mac_ok(key, RECORD_PURPOSE, canonical, mac):
                return broken(
                    seq,
                    f"record {seq}: MAC does not match under this audit key (key id {keys.key_id(key)}): it was "
                    "rewritten by someone without the key, or this is not the key the log was written with "
                    "(check SQUADS_AUDIT_KEY / SQUADS_AUDIT_KEY_FILE)",
                )
            if not keyed and unkeyed and row[i_kind] != _SEAL:
                return broken(seq, f"records 1-{seq - 1} carry no MAC and record {seq} is not the chain_keyed record "
                                   "that vouches for them: they were written without the audit key")  # fmt: skip
            keyed = True
        for anchor in by_seq.get(seq, ()):
            if anchor.hash != stored:
                return broken(seq, f"record {seq} has hash {stored} but {anchor.source} recorded {anchor.hash} "
                                   "for it: the log was rewritten after that")  # fmt: skip
        checked, last_seq, last_hash = checked + 1, seq, stored
    if unkeyed and not keyed:
        return VerifyReport(
            False, 0, 0, GENESIS_HASH, 1,
            f"records 1-{last_seq} carry no MAC and no chain_keyed record vouches for them: they were written "
            "before the chain was keyed and never sealed (open the database with this version of squads to seal "
            "them), or the log was rewritten without the audit key",
            0, len(anchors),
        )  # fmt: skip
    beyond = [a for a in anchors if a.seq > last_seq]
    if beyond:
        anchor = max(beyond, key=lambda a: a.seq)
        return broken(
            last_seq + 1,
            f"head is {last_hash} (record {last_seq}) but {anchor.source} recorded record {anchor.seq} "
            f"({anchor.hash}): records {last_seq + 1}-{anchor.seq} were removed from the end, or the database "
            "was replaced by an older copy",
        )
    return VerifyReport(True, checked, last_seq, last_hash, None, None, unkeyed, len(anchors))


def verify(
    session_or_conn: Session | Connection,
    *,
    expect_head: str | None = None,
    anchors: Sequence[Anchor] = (),
    key: bytes | None = None,
    batch: int = 2000,
) -> VerifyReport:
    """Recompute the whole chain and its MACs, compare it with ``anchors``, and name the first broken record.

    ``expect_head`` is a hash anchored elsewhere (``squads audit head``); it
    must be the head or appear in the chain, since the log may have grown
    since it was taken. ``anchors`` pin a hash to a seq (signed checkpoints,
    :mod:`squads.audit.anchor`): a record there with another hash, or a log shorter
    than an anchor, is broken. ``key`` defaults to the one the session carries.
    """
    key = key or keys.session_key(session_or_conn)
    cols = [_TABLE.c[name] for name in HASHED_FIELDS] + [_TABLE.c.hash, _TABLE.c.mac]
    rows = _stream(session_or_conn, select(*cols).order_by(_TABLE.c.seq), batch)
    report = _walk(rows, key, anchors)
    if not report.ok or expect_head is None or expect_head == GENESIS_HASH:
        return report
    found = session_or_conn.execute(select(_TABLE.c.seq).where(_TABLE.c.hash == expect_head)).first()
    if found is None:
        return VerifyReport(
            False, report.records_checked, report.head_seq, report.head_hash, report.head_seq + 1,
            f"head is {report.head_hash} (record {report.head_seq}) but expected {expect_head}, which is nowhere "
            "in the chain (records were removed from the end or the log was replaced)",
            report.sealed_records, report.anchors_checked,
        )  # fmt: skip
    return report
