"""Prompt-cache writes: request_log.cache_write_5m_tokens and cache_write_1h_tokens (the two lifetimes
Anthropic prices apart; cached_tokens stays the cache reads), and cache_write_tokens (both) on
daily_spend and every hourly and daily rollup.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Self-contained like 0001-0004 (no imports from gateway.db.models). Rows written before this revision
count no cache writes (0): their writes were recorded, and charged, as plain prompt tokens.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_COLUMNS = ("cache_write_5m_tokens", "cache_write_1h_tokens")
ROLLUPS = (
    "daily_spend",
    "hourly_spend",
    "hourly_team_spend",
    "hourly_model_spend",
    "hourly_team_totals",
    "daily_key_totals",
    "daily_team_spend",
    "daily_model_spend",
    "daily_team_totals",
)


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        for name in LOG_COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
    for table in ROLLUPS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table in reversed(ROLLUPS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cache_write_tokens")
    with op.batch_alter_table("request_log") as batch:
        for name in reversed(LOG_COLUMNS):
            batch.drop_column(name)
