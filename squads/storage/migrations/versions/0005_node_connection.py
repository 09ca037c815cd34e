"""Node connection state, for processes other than the control plane (squads node list)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("connected_since", sa.String(40)))
        batch.add_column(sa.Column("connected_from", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("connected_from")
        batch.drop_column("connected_since")
