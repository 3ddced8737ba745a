"""Channel formats openai-chat and gemini (SPEC §11); the log row's client and channel
formats and the fields a conversion dropped

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OLD = "format IN ('openai', 'anthropic')"
_NEW = "format IN ('openai', 'openai-chat', 'anthropic', 'gemini')"


def upgrade() -> None:
    # Existing channels keep their format: `openai` and `anthropic` mean what they meant.
    with op.batch_alter_table("channels") as batch:
        batch.drop_constraint("channel_format_known", type_="check")
        batch.create_check_constraint("channel_format_known", _NEW)
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("client_format", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("channel_format", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("dropped_fields", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("dropped_fields")
        batch.drop_column("channel_format")
        batch.drop_column("client_format")
    op.execute("DELETE FROM channels WHERE format NOT IN ('openai', 'anthropic')")
    with op.batch_alter_table("channels") as batch:
        batch.drop_constraint("channel_format_known", type_="check")
        batch.create_check_constraint("channel_format_known", _OLD)
