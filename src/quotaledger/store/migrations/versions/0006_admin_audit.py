"""The operator console (SPEC §13): the audit trail of admin actions, and deductions as
ledger entries (a grant row may now be negative: a deduction with its reason)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("admin_audit_created", "admin_audit", ["created_at"], unique=False)
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("grant_positive", type_="check")
        batch.create_check_constraint("grant_not_zero", "quota <> 0")


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("grant_not_zero", type_="check")
        batch.create_check_constraint("grant_positive", "quota > 0")
    op.drop_index("admin_audit_created", table_name="admin_audit")
    op.drop_table("admin_audit")
