"""stored_responses: Responses API answers kept per key for previous_response_id and GET.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        # JSON text: PostgreSQL's JSONB refuses a NUL in a string, which a client may send.
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_responses")),
    )
    # The retention purge deletes by age.
    op.create_index(op.f("ix_stored_responses_created_at"), "stored_responses", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_stored_responses_created_at"), table_name="stored_responses")
    op.drop_table("stored_responses")
