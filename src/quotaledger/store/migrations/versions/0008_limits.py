"""Rate limits on keys, accounts and groups; channel health, per-minute channel stats and
upstream balances (SPEC §12)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
# After 0007.
down_revision = "0007"
branch_labels = None
depends_on = None


def _limit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
    ]


def upgrade() -> None:
    for table in ("users", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for column in _limit_columns():
                batch.add_column(column)
    op.create_table(
        "group_limits",
        sa.Column("group", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True, server_default=""),
        *_limit_columns(),
    )
    op.create_table(
        "channel_health",
        sa.Column("channel_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("reason", sa.String(300), nullable=True),
        sa.Column("cause", sa.String(16), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Text(), nullable=False, server_default=""),
        sa.Column("probe_at_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("last_error_at", sa.BigInteger(), nullable=True),
        sa.Column("last_success_at", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "channel_minutes",
        sa.Column("channel_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("minute", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "channel_balances",
        sa.Column("channel_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(512), nullable=True),
        sa.Column("alert_usd", sa.String(40), nullable=True),
        sa.Column("disable_at_zero", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("amount", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("checked_at", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("level", sa.String(16), nullable=False, server_default="OK"),
        sa.Column("announced", sa.String(16), nullable=False, server_default="OK"),
        sa.Column("next_poll_at", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in ("channel_balances", "channel_minutes", "channel_health", "group_limits"):
        op.drop_table(table)
    for table in ("api_keys", "users"):
        with op.batch_alter_table(table) as batch:
            for name in ("concurrency", "tpm", "rpm"):
                batch.drop_column(name)
