"""event feed waiting: the events without a feed cursor, indexed in feed order

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 05:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every round of the webhook worker looks for events without a cursor: without this
    # index, a scan of the whole outbox; with it, only the few that wait.
    op.create_index(
        "ix_call_events_waiting_for_cursor",
        "call_events",
        ["created_at", "call_sid", "sequence"],
        postgresql_where=sa.text("cursor IS NULL"),
        sqlite_where=sa.text("cursor IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_events_waiting_for_cursor", table_name="call_events")
