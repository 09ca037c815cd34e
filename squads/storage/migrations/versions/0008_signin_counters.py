"""Sign-in throttling in the database: atomic counters per account, per account+address and per address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_counters",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_signin_counters"),
    )
    op.create_index("ix_signin_counters_window_start", "signin_counters", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_signin_counters_window_start", "signin_counters")
    op.drop_table("signin_counters")
