"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('adapter_state',
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('cursor_moved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('epoch', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_ok_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pause_reason', sa.String(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('adapter')
    )
    op.create_table('chat_session',
    sa.Column('session_id', sa.String(length=160), nullable=False),
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.String(length=128), nullable=True),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_customer_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('session_id')
    )
    with op.batch_alter_table('chat_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_session_adapter'), ['adapter'], unique=False)

    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.String(length=128), nullable=False),
    sa.Column('session_id', sa.String(length=160), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id')
    )
    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.String(length=128), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('ours', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('turn_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('adapter', 'external_id', name='uq_message_adapter_external')
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_ticket', ['adapter', 'ticket_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_turn_id'), ['turn_id'], unique=False)

    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=64), nullable=False),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.Column('requester_key', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('tags', sa.Text(), server_default='', nullable=False),
    sa.Column('remote_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('needs_sync', sa.Boolean(), nullable=False),
    sa.Column('change_seq', sa.Integer(), nullable=False),
    sa.Column('sync_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sync_attempts', sa.Integer(), nullable=False),
    sa.Column('sync_error', sa.String(), nullable=True),
    sa.Column('session_seq', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('adapter', 'external_id', name='uq_ticket_adapter_external')
    )
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_sync', ['needs_sync', 'sync_after'], unique=False)

    op.create_table('turn',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adapter', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.String(length=128), nullable=False),
    sa.Column('session_id', sa.String(length=160), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('last_message_id', sa.String(length=128), nullable=False),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('confidence_level', sa.String(length=32), nullable=True),
    sa.Column('confidence_score', sa.Float(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('superseded_by', sa.Integer(), nullable=True),
    sa.Column('posted_id', sa.String(length=128), nullable=True),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('claim_owner', sa.String(length=128), nullable=True),
    sa.Column('claim_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('turn', schema=None) as batch_op:
        batch_op.create_index('ix_turn_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_turn_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_turn_session_id'), ['session_id'], unique=False)
        batch_op.create_index('ix_turn_ticket', ['adapter', 'ticket_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('turn', schema=None) as batch_op:
        batch_op.drop_index('ix_turn_ticket')
        batch_op.drop_index(batch_op.f('ix_turn_session_id'))
        batch_op.drop_index(batch_op.f('ix_turn_request_id'))
        batch_op.drop_index('ix_turn_due')

    op.drop_table('turn')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_sync')

    op.drop_table('ticket')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_turn_id'))
        batch_op.drop_index('ix_message_ticket')

    op.drop_table('message')
    op.drop_table('feedback')
    with op.batch_alter_table('chat_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_session_adapter'))

    op.drop_table('chat_session')
    op.drop_table('adapter_state')
