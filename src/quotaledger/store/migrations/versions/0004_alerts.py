"""Alerts on the server: thresholds and Apprise URLs per account, thresholds per key, and
the state each was last found at and announced

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_settings",
        sa.Column("user_id", Id, autoincrement=False, nullable=False),
        sa.Column("warn_quota", sa.BigInteger(), nullable=True),
        sa.Column("critical_quota", sa.BigInteger(), nullable=True),
        sa.Column("urls_encrypted", sa.Text(), nullable=True),
        sa.Column("url_hints", sa.Text(), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "key_alerts",
        sa.Column("key_id", Id, autoincrement=False, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("warn_quota", sa.BigInteger(), nullable=True),
        sa.Column("critical_quota", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("key_alerts_user", "key_alerts", ["user_id"], unique=False)
    op.create_table(
        "alert_states",
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("announced", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_at", sa.BigInteger(), nullable=True),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index("alert_states_retry", "alert_states", ["retry_at"], unique=False)


def downgrade() -> None:
    op.drop_index("alert_states_retry", table_name="alert_states")
    op.drop_table("alert_states")
    op.drop_index("key_alerts_user", table_name="key_alerts")
    op.drop_table("key_alerts")
    op.drop_table("alert_settings")
