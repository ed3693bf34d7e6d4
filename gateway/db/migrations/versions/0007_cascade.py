"""Cascade routing: request_log.escalated and request_log.wasted_cost_usd.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Self-contained like the others (no imports from gateway.db.models). A request a cascade escalated was
billed for two calls: `cost_usd` and the token counts cover both, `wasted_cost_usd` is the first,
discarded answer's share. Rows written before this revision were not escalated (false, NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FALSE = sa.text("false")
MONEY = sa.Numeric(20, 10).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("escalated", sa.Boolean(), server_default=FALSE, nullable=False))
        batch.add_column(sa.Column("wasted_cost_usd", MONEY, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("wasted_cost_usd")
        batch.drop_column("escalated")
