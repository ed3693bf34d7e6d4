"""Initial schema: teams, api_keys, request_log, daily_spend, audit_log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Self-contained on purpose (no imports from gateway.db.models): a migration must keep producing the
same schema after the models move on. The types mirror gateway.db.types: money is NUMERIC(20, 10) on
PostgreSQL and an integer count of 1e-10 USD on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 10).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")
FALSE = sa.text("false")
PERIOD_CHECK = "budget_period IS NULL OR budget_period IN ('daily', 'weekly', 'monthly', 'total')"
LIVE = sa.text("deleted_at IS NULL")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("budget_usd", MONEY, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
        sa.Column("budget_reset_at", TS, nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("routing", JSON, nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.CheckConstraint(PERIOD_CHECK, name=op.f("ck_teams_budget_period")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
    )
    op.create_index(
        "uq_teams_name_live", "teams", ["name"], unique=True, postgresql_where=LIVE, sqlite_where=LIVE
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default=FALSE, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("budget_usd", MONEY, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
        sa.Column("budget_reset_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.CheckConstraint(PERIOD_CHECK, name=op.f("ck_api_keys_budget_period")),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_api_keys_team_id_teams")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_team_id"), "api_keys", ["team_id"], unique=False)

    op.create_table(
        "request_log",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("team_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("requested_model", sa.Text(), nullable=False),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("deployment", sa.Text(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("difficulty", sa.Float(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("fallbacks", sa.Integer(), nullable=False),
        sa.Column("tokens_estimated", sa.Boolean(), server_default=FALSE, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_request_log")),
    )
    op.create_index("ix_request_log_team_id_ts", "request_log", ["team_id", "ts"], unique=False)
    op.create_index("ix_request_log_key_id_ts", "request_log", ["key_id", "ts"], unique=False)
    op.create_index("ix_request_log_ts", "request_log", ["ts"], unique=False)

    op.create_table(
        "daily_spend",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", MONEY, server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", "team_id", "key_id", "model", "tier", name=op.f("pk_daily_spend")),
    )
    op.create_index("ix_daily_spend_team_id_day", "daily_spend", ["team_id", "day"], unique=False)
    op.create_index("ix_daily_spend_key_id_day", "daily_spend", ["key_id", "day"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_ts"), "audit_log", ["ts"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("daily_spend")
    op.drop_table("request_log")
    op.drop_table("api_keys")
    op.drop_table("teams")
