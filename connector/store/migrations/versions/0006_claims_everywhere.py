"""claims on session closes and feedback; a table of secrets the daemon keeps for itself

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CLAIMED = ("chat_session", "feedback")


def upgrade() -> None:
    for table in CLAIMED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("claim_owner", sa.String(length=128), nullable=True))
            batch_op.add_column(sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "stored_secret",
        sa.Column("name", sa.String(length=160), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stored_secret")
    for table in CLAIMED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("claim_until")
            batch_op.drop_column("claim_owner")
