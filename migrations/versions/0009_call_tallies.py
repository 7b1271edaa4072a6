"""call tallies: counts kept as calls are placed and end; call-logs indexes in list order

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""

# The SQL below is built from this file's own constants, never from input.
# ruff: noqa: S608

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The terminal statuses (calls.models.TERMINAL_STATUSES) when this revision was written.
TERMINAL = "('completed', 'failed', 'no-answer')"
FIGURES = (
    "calls",
    "answered",
    "bridged",
    "completed",
    "failed",
    "no_answer",
    "talk_sec",
    "bridged_talk_sec",
    "billed_sec",
    "price_paise",
)
INDEXES = {
    "ix_calls_org_status_created": ("org_id", "status", "created_at"),
    "ix_calls_org_party_a": ("org_id", "party_a", "created_at"),
    "ix_calls_org_party_b": ("org_id", "party_b", "created_at"),
}


def _ist_day(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"date(timezone('Asia/Kolkata', {column}))"
    return f"date({column}, '+330 minutes')"


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        for name, columns in INDEXES.items():
            batch.drop_index(name)
            batch.create_index(name, [*columns, "id"], unique=False)
    op.create_table(
        "call_counts",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("pairs_from", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_call_counts_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_call_counts")),
    )
    op.create_table(
        "call_day_tallies",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(
            sa.Column(name, sa.Integer() if i < 6 else sa.BigInteger(), nullable=False)
            for i, name in enumerate(FIGURES)
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_call_day_tallies_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", "day", name=op.f("pk_call_day_tallies")),
    )
    op.create_table(
        "call_pairs",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("pair", sa.String(length=32), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("prev_day", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_call_pairs_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", "pair", name=op.f("pk_call_pairs")),
    )
    op.create_table(
        "call_day_pairs_since",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_call_day_pairs_since_org_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("org_id", "day", "since", name=op.f("pk_call_day_pairs_since")),
    )
    # The calls stored now: counted; their pairs are digests this revision cannot make
    # (the key is not the migration's), so pairs are tallied from the day after the last.
    day_after = (
        f"{_ist_day('max(created_at)')} + 1"
        if op.get_bind().dialect.name == "postgresql"
        else "date(max(created_at), '+330 minutes', '+1 day')"
    )
    op.execute(
        "INSERT INTO call_counts (org_id, calls, pairs_from) "
        f"SELECT org_id, count(*), {day_after} FROM calls GROUP BY org_id"
    )
    # The ended calls' figures per IST day, and those of the calls retention deleted.
    ended = (
        f"SELECT org_id, {_ist_day('created_at')} AS day, 1 AS calls, "
        "CASE WHEN answered_at IS NULL THEN 0 ELSE 1 END AS answered, "
        "CASE WHEN bridged_at IS NULL THEN 0 ELSE 1 END AS bridged, "
        "CASE WHEN status = 'completed' THEN 1 ELSE 0 END AS completed, "
        "CASE WHEN status = 'failed' THEN 1 ELSE 0 END AS failed, "
        "CASE WHEN status = 'no-answer' THEN 1 ELSE 0 END AS no_answer, "
        "talk_sec, CASE WHEN bridged_at IS NULL THEN 0 ELSE talk_sec END AS bridged_talk_sec, "
        "billed_pulses * pulse_sec AS billed_sec, price_paise "
        f"FROM calls WHERE status IN {TERMINAL}"
    )
    figures = ", ".join(FIGURES)
    sums = ", ".join(f"sum({name})" for name in FIGURES)
    op.execute(
        f"INSERT INTO call_day_tallies (org_id, day, {figures}) "
        f"SELECT org_id, day, {sums} FROM ("
        f"{ended} UNION ALL SELECT org_id, day, {figures} FROM call_day_rollups"
        ") AS every GROUP BY org_id, day"
    )


def downgrade() -> None:
    op.drop_table("call_day_pairs_since")
    op.drop_table("call_pairs")
    op.drop_table("call_day_tallies")
    op.drop_table("call_counts")
    with op.batch_alter_table("calls") as batch:
        for name, columns in INDEXES.items():
            batch.drop_index(name)
            batch.create_index(name, list(columns), unique=False)
