"""Hourly rollups: request_log.baseline_cost_usd; hourly_spend, hourly_team_spend, hourly_model_spend
and hourly_team_totals (totals and histograms per hour, at four levels of detail).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Self-contained like 0001 (no imports from gateway.db.models). Rows logged before this revision have
no baseline (NULL) and are not in the hourly tables: their rollups start with the first batch
written after the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 10).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _sums() -> list[sa.Column]:
    """The columns every hourly rollup sums."""
    return [
        sa.Column("hour", TS, nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", MONEY, server_default="0", nullable=False),
        sa.Column("baseline_cost_usd", MONEY, server_default="0", nullable=False),
        sa.Column("unpriced", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rate_limited", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("budget_refused", sa.BigInteger(), server_default="0", nullable=False),
    ]


def _histograms() -> list[sa.Column]:
    return [
        sa.Column("latency_hist", JSON, nullable=True),
        sa.Column("ttft_hist", JSON, nullable=True),
        sa.Column("difficulty_hist", JSON, nullable=True),
    ]


TEAM = sa.String(32)
TIER = sa.String(32)
ROLLUPS = ("hourly_spend", "hourly_team_spend", "hourly_model_spend", "hourly_team_totals")


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("baseline_cost_usd", MONEY, nullable=True))

    op.create_table(
        "hourly_spend",
        sa.Column("team_id", TEAM, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("tier", TIER, nullable=False),
        sa.Column("error_type", sa.Text(), nullable=False),
        *_sums(),
        *_histograms(),
        sa.PrimaryKeyConstraint(
            "hour", "team_id", "key_id", "model", "tier", "error_type", name=op.f("pk_hourly_spend")
        ),
    )
    op.create_index("ix_hourly_spend_team_id_hour", "hourly_spend", ["team_id", "hour"], unique=False)
    op.create_index("ix_hourly_spend_key_id_hour", "hourly_spend", ["key_id", "hour"], unique=False)

    op.create_table(
        "hourly_team_spend",
        sa.Column("team_id", TEAM, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("tier", TIER, nullable=False),
        sa.Column("error_type", sa.Text(), nullable=False),
        *_sums(),
        *_histograms(),
        sa.PrimaryKeyConstraint(
            "hour", "team_id", "model", "tier", "error_type", name=op.f("pk_hourly_team_spend")
        ),
    )
    op.create_index(
        "ix_hourly_team_spend_team_id_hour", "hourly_team_spend", ["team_id", "hour"], unique=False
    )

    op.create_table(
        "hourly_model_spend",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("tier", TIER, nullable=False),
        sa.Column("error_type", sa.Text(), nullable=False),
        *_sums(),
        *_histograms(),
        sa.PrimaryKeyConstraint("hour", "model", "tier", "error_type", name=op.f("pk_hourly_model_spend")),
    )

    op.create_table(
        "hourly_team_totals",
        sa.Column("team_id", TEAM, nullable=False),
        *_sums(),
        sa.PrimaryKeyConstraint("hour", "team_id", name=op.f("pk_hourly_team_totals")),
    )

    if op.get_bind().dialect.name == "postgresql":
        # Room in each page for the new version of a row the writer adds to: updates of the current
        # hours' rows stay on their page (HOT) and skip the indexes. Measured on hourly_spend: a
        # batch's upsert into cells seen before ~30% faster than at the default 100.
        for table in ROLLUPS:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    for table in reversed(ROLLUPS):
        op.drop_table(table)
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("baseline_cost_usd")
