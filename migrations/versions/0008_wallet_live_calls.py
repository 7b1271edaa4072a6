"""wallet live calls: the live-call cap as a counter beside the balance it guards

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(sa.Column("live_calls", sa.Integer(), nullable=False, server_default="0"))
        batch.create_check_constraint(op.f("ck_wallets_live_calls_non_negative"), "live_calls >= 0")
    op.execute(
        # The live statuses (calls.models.LIVE_STATUSES) when this revision was written.
        "UPDATE wallets SET live_calls = (SELECT count(*) FROM calls "
        "WHERE calls.org_id = wallets.org_id "
        "AND calls.status IN ('initiated', 'ringing', 'answered', 'in-progress'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.drop_constraint("ck_wallets_live_calls_non_negative", type_="check")
        batch.drop_column("live_calls")
