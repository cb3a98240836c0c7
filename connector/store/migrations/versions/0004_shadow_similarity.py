"""shadow mode: how close each stored answer was to the agent's actual reply

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turn") as batch_op:
        batch_op.add_column(sa.Column("similarity", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turn") as batch_op:
        batch_op.drop_column("similarity")
