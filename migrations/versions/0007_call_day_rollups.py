"""call day rollups: what stats keep of calls deleted by retention

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_day_rollups",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("bridged", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("no_answer", sa.Integer(), nullable=False),
        sa.Column("talk_sec", sa.BigInteger(), nullable=False),
        sa.Column("bridged_talk_sec", sa.BigInteger(), nullable=False),
        sa.Column("billed_sec", sa.BigInteger(), nullable=False),
        sa.Column("price_paise", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_call_day_rollups_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", "day", name=op.f("pk_call_day_rollups")),
    )
    op.create_table(
        "call_day_pairs",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("pair", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_call_day_pairs_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", "day", "pair", name=op.f("pk_call_day_pairs")),
    )


def downgrade() -> None:
    op.drop_table("call_day_pairs")
    op.drop_table("call_day_rollups")
