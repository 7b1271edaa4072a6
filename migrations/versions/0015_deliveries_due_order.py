"""deliveries due order: the due index also orders the worker's claim

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 21:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The claim takes the due deliveries in (next_attempt_at, sequence) order. Indexed on
    # (status, next_attempt_at) only, every claim read and sorted all the rows due at the
    # same moment (a backlog queued together) to return the first hundred; with sequence
    # in the index it reads them in order and stops at the hundredth.
    op.create_index(
        "ix_webhook_deliveries_due_order",
        "webhook_deliveries",
        ["status", "next_attempt_at", "sequence"],
    )
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.drop_index("ix_webhook_deliveries_due_order", table_name="webhook_deliveries")
