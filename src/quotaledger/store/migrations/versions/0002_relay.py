"""the relay: API keys, channels, reservations, cache prices, relay columns of the log

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.String(length=512), nullable=False),
        sa.Column("format", sa.String(length=16), server_default="openai", nullable=False),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("model_map", sa.Text(), server_default="{}", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="enabled", nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_hint", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("format IN ('openai', 'anthropic')", name="channel_format_known"),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name="channel_status_known"),
        sa.CheckConstraint("weight >= 1", name="channel_weight_positive"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_hint", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="enabled", nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.Column("unlimited", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("remain_quota", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("granted_quota", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("used_quota", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("request_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("models", sa.Text(), nullable=True),
        sa.Column("networks", sa.Text(), nullable=True),
        sa.Column("group", sa.String(length=64), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=True),
        sa.Column("period_quota", sa.BigInteger(), nullable=True),
        sa.Column("period_used", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("period_start", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("period IS NULL OR period IN ('day', 'month')", name="key_period_known"),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name="key_status_known"),
        sa.CheckConstraint("period_used >= 0", name="key_period_not_negative"),
        sa.CheckConstraint("remain_quota >= 0", name="key_remain_not_negative"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("api_keys_user", "api_keys", ["user_id"], unique=False)
    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("key_id", Id, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("price_format", sa.String(length=16), nullable=False),
        sa.Column("group", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("key_funded", sa.Boolean(), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("progress_status", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("active_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount >= 0", name="reservation_not_negative"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("reservations_active", "reservations", ["active_at"], unique=False)
    op.create_index("reservations_user", "reservations", ["user_id"], unique=False)
    for name in ("cache_read", "cache_write", "cache_write_1h"):
        op.add_column("prices", sa.Column(f"{name}_usd_per_mtok", sa.String(40), nullable=True))
    for column in _usage_columns():
        op.add_column("usage", column)
    op.create_index("usage_key_newest", "usage", ["key_id", "id"], unique=False)


def _usage_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    counters = ("cached_tokens", "cache_write_tokens", "cache_write_1h_tokens")
    return [
        sa.Column("key_id", sa.BigInteger(), nullable=True),
        sa.Column("key_name", sa.String(length=64), nullable=True),
        sa.Column("upstream_model", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("is_stream", sa.Boolean(), nullable=True),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in counters),
        sa.Column("quota_reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("written_off", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_source", sa.String(length=16), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("status", sa.Integer(), server_default="200", nullable=True),
        sa.Column("latency_ms", sa.BigInteger(), nullable=True),
        sa.Column("ttft_ms", sa.BigInteger(), nullable=True),
        sa.Column("session_id", sa.String(length=128), nullable=True),
    ]


def downgrade() -> None:
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_index("usage_key_newest")
        for column in reversed(_usage_columns()):
            batch_op.drop_column(column.name)
    with op.batch_alter_table("prices", schema=None) as batch_op:
        for name in ("cache_write_1h", "cache_write", "cache_read"):
            batch_op.drop_column(f"{name}_usd_per_mtok")
    op.drop_index("reservations_user", table_name="reservations")
    op.drop_index("reservations_active", table_name="reservations")
    op.drop_table("reservations")
    op.drop_index("api_keys_user", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("channels")
