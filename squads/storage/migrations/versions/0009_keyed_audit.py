"""Key the audit chain and transcripts: record and event MACs, the seal of older records, append-only events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Records written before this migration have no MAC. Rather than rewrite them,
one ``chain_keyed`` record is appended: its MAC covers its prev_hash, the hash
of the last older record, and so vouches for every record before it. Existing
transcript events are MACed here, before their append-only triggers exist.
Both need the audit key: squads.storage.service.upgrade hands it in, else it is this
process's (SQUADS_AUDIT_KEY or the key file).
"""
from alembic import context, op
import sqlalchemy as sa
from sqlalchemy.orm import Session

from squads.audit import keys
from squads.audit import chain as audit
from squads.audit.models import RecordKind
from transcripts.integrity import event_mac

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APPEND_ONLY = "transcript events are append-only"


def _key() -> bytes:
    key = context.config.attributes.get(keys.SESSION_KEY)
    return key if isinstance(key, bytes) else keys.process_key()


def _mac_existing_events(conn: sa.Connection, key: bytes) -> None:
    events = sa.table(
        "conversation_events", *(sa.column(c) for c in (
            "id", "conversation_id", "seq", "turn", "kind", "at", "audit_seq", "data", "audit_hash", "mac")),
    )  # fmt: skip
    records = sa.table("audit_records", sa.column("seq"), sa.column("hash"))
    rows = conn.execute(
        sa.select(events, records.c.hash.label("record_hash"))
        .outerjoin(records, records.c.seq == events.c.audit_seq)
    ).mappings().all()
    for row in rows:
        stored = {name: row[name] for name in ("conversation_id", "seq", "turn", "kind", "at", "audit_seq", "data")}
        stored["audit_hash"] = row["record_hash"]
        conn.execute(
            events.update().where(events.c.id == row["id"]),
            {"audit_hash": row["record_hash"], "mac": event_mac(key, **stored)},
        )


def _seal_older_records(conn: sa.Connection, key: bytes) -> None:
    session = Session(bind=conn, info={keys.SESSION_KEY: key})
    try:
        seq, head_hash = audit.head(session)
        if seq:
            audit.append(
                session, kind=RecordKind.CHAIN_KEYED, actor="squads (migration 0009)",
                reason=f"the chain is keyed from here; this record's MAC vouches for records 1-{seq}, "
                       "which were written before the audit key existed",
                details={"sealed_seq": seq, "sealed_hash": head_hash, "key_id": keys.key_id(key)},
            )  # fmt: skip
            session.flush()
    finally:
        session.close()


def upgrade() -> None:
    op.add_column("audit_records", sa.Column("mac", sa.String(64)))
    op.add_column("conversation_events", sa.Column("audit_hash", sa.String(64)))
    op.add_column("conversation_events", sa.Column("mac", sa.String(64)))
    conn = op.get_bind()
    key = _key()
    _mac_existing_events(conn, key)
    _seal_older_records(conn, key)

    dialect = conn.dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER conversation_events_no_{action.lower()} BEFORE {action} ON conversation_events "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION conversation_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER conversation_events_no_update_delete BEFORE UPDATE OR DELETE ON conversation_events "
            "FOR EACH ROW EXECUTE FUNCTION conversation_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER conversation_events_no_truncate BEFORE TRUNCATE ON conversation_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION conversation_events_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS conversation_events_no_truncate ON conversation_events")
        op.execute("DROP TRIGGER IF EXISTS conversation_events_no_update_delete ON conversation_events")
        op.execute("DROP FUNCTION IF EXISTS conversation_events_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS conversation_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS conversation_events_no_delete")
    # The seal record stays: audit records are append-only, and it is harmless without the column's MACs.
    # Plain ALTER TABLE (SQLite >= 3.35 and PostgreSQL): a batch copy would lose the audit table's triggers.
    for table, column in (("conversation_events", "mac"), ("conversation_events", "audit_hash"), ("audit_records", "mac")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
