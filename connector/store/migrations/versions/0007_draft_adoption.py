"""draft adoption: what the agent did with each posted draft; where feedback came from

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turn") as batch_op:
        batch_op.add_column(sa.Column("adoption", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("adoption_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("adopted_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("agent_reply_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(8), nullable=False,
                                      server_default="tag"))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("turn") as batch_op:
        batch_op.drop_column("agent_reply_at")
        batch_op.drop_column("adopted_at")
        batch_op.drop_column("adoption_score")
        batch_op.drop_column("adoption")
