"""deliveries due order with the URL: the claim passes over a held-back lane's rows in the
index

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 02:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The claim leaves out the URLs whose lane is full or whose circuit is open, and their
    # due rows lie at the head of the due order. With the URL in the index, SQLite tests
    # it on the index entry and reads no table row for a row left out; the worker's push
    # of an open circuit's rows (``url`` and due) reads the index only. The URL never
    # changes, so PostgreSQL's heap-only updates of a claim are kept.
    op.create_index(
        "ix_webhook_deliveries_due_lane",
        "webhook_deliveries",
        ["status", "next_attempt_at", "sequence", "url"],
    )
    op.drop_index("ix_webhook_deliveries_due_order", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_due_order",
        "webhook_deliveries",
        ["status", "next_attempt_at", "sequence"],
    )
    op.drop_index("ix_webhook_deliveries_due_lane", table_name="webhook_deliveries")
