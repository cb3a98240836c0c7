"""message counts on tickets, so a ticket that only our own post changed is not read again

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.add_column(sa.Column("reported_messages", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("known_messages", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_column("known_messages")
        batch_op.drop_column("reported_messages")
