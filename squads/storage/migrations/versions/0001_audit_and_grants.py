"""audit log (append-only, hash-chained) and stored grants

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = "audit records are append-only"


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("squad", sa.String(100)),
        sa.Column("agent", sa.String(200)),
        sa.Column("node", sa.String(200)),
        sa.Column("argv", sa.Text()),
        sa.Column("decision", sa.String(32)),
        sa.Column("rule", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("conversation_id", sa.String(64)),
        sa.Column("incident_id", sa.String(64)),
        sa.Column("ref_seq", sa.Integer()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("duration_ms", sa.Integer()),
        sa.Column("output_sha256", sa.String(64)),
        sa.Column("stdout", sa.Text()),
        sa.Column("stderr", sa.Text()),
        sa.Column("truncated", sa.Boolean()),
        sa.Column("details", sa.Text()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
        sa.UniqueConstraint("hash", name="uq_audit_records_hash"),
    )
    for col in ("ts", "kind", "node", "conversation_id", "incident_id", "ref_seq"):
        op.create_index(f"ix_audit_records_{col}", "audit_records", [col])

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.UniqueConstraint("name", name="uq_grants_name"),
    )

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_records_no_{action.lower()} BEFORE {action} ON audit_records "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_records_no_update_delete BEFORE UPDATE OR DELETE ON audit_records "
            "FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()"
        )
        # TRUNCATE bypasses row triggers; refuse it too.
        op.execute(
            "CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_truncate ON audit_records")
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_update_delete ON audit_records")
        op.execute("DROP FUNCTION IF EXISTS audit_records_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
    op.drop_table("grants")
    op.drop_table("audit_records")
