"""Measuring routing on a team's traffic: request_log.kind (client requests apart from shadow and judge
calls), the teams' capture and shadow-budget settings, and the feedback, shadow_verdicts and
captured_prompts tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Self-contained like the others (no imports from gateway.db.models).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 10).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), server_default="request", nullable=False))
    with op.batch_alter_table("teams") as batch:
        batch.add_column(
            sa.Column("capture_prompts", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch.add_column(sa.Column("capture_retention_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shadow_budget_usd", MONEY, nullable=True))
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("team_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_feedback")),
    )
    op.create_index("ix_feedback_team_id_ts", "feedback", ["team_id", "ts"])
    op.create_table(
        "shadow_verdicts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("team_id", sa.String(32), nullable=True),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("deployment", sa.Text(), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("strong_deployment", sa.Text(), nullable=False),
        sa.Column("judge", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("votes", JSON, nullable=False),
        sa.Column("cost_usd", MONEY, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_verdicts")),
    )
    op.create_index("ix_shadow_verdicts_team_id_ts", "shadow_verdicts", ["team_id", "ts"])
    op.create_index("ix_shadow_verdicts_route_ts", "shadow_verdicts", ["route", "ts"])
    op.create_index("ix_shadow_verdicts_request_id", "shadow_verdicts", ["request_id"])
    op.create_table(
        "captured_prompts",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("team_id", sa.String(32), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("messages", JSON, nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_captured_prompts")),
    )
    op.create_index("ix_captured_prompts_team_id_ts", "captured_prompts", ["team_id", "ts"])
    op.create_index("ix_captured_prompts_expires_at", "captured_prompts", ["expires_at"])


def downgrade() -> None:
    op.drop_table("captured_prompts")
    op.drop_table("shadow_verdicts")
    op.drop_table("feedback")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("shadow_budget_usd")
        batch.drop_column("capture_retention_days")
        batch.drop_column("capture_prompts")
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("kind")
