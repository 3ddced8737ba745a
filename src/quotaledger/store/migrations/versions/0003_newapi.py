"""new-api's user API: the usage log indexed by time, redemption codes

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("usage_user_created", "usage", ["user_id", "created_at"], unique=False)
    op.create_table(
        "redemptions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), server_default="", nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hint", sa.String(length=16), nullable=False),
        sa.Column("quota", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="enabled", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_at", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_by", Id, nullable=True),
        sa.CheckConstraint("quota > 0", name="redemption_positive"),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name="redemption_status_known"),
        sa.ForeignKeyConstraint(["redeemed_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )


def downgrade() -> None:
    op.drop_table("redemptions")
    op.drop_index("usage_user_created", table_name="usage")
