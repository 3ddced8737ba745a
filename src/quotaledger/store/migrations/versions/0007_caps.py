"""Output caps and priced extras (SPEC §8b): a model's maximum output, a long-context tier
and web-search prices on `prices`; the usage note, web searches and price tier on the log

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PRICE_TEXT = (
    "long_input_usd_per_mtok",
    "long_output_usd_per_mtok",
    "long_cache_read_usd_per_mtok",
    "long_cache_write_usd_per_mtok",
    "long_cache_write_1h_usd_per_mtok",
    "web_search_usd_per_kcall",
)


def upgrade() -> None:
    # Every new column is nullable or defaulted: existing prices and log rows read as before.
    with op.batch_alter_table("prices") as batch:
        batch.add_column(sa.Column("max_output_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("long_context_threshold", sa.BigInteger(), nullable=True))
        for name in _PRICE_TEXT:
            batch.add_column(sa.Column(name, sa.String(length=40), nullable=True))
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("usage_note", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("web_search_calls", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("price_tier", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("price_tier")
        batch.drop_column("web_search_calls")
        batch.drop_column("usage_note")
    with op.batch_alter_table("prices") as batch:
        for name in reversed(_PRICE_TEXT):
            batch.drop_column(name)
        batch.drop_column("long_context_threshold")
        batch.drop_column("max_output_tokens")
