"""tally shards: an organisation's new-call counts spread over rows, one per batch

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 07:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# table → its primary key before this revision (the shard is added last).
KEYS = {
    "call_counts": ("org_id",),
    "call_day_pairs_since": ("org_id", "day", "since"),
}


def upgrade() -> None:
    # The rows so far become shard 0; a batch adds to the shard it drew (calls/tally.py).
    for table, key in KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("shard", sa.SmallInteger(), nullable=False, server_default="0")
            )
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", [*key, "shard"])


def downgrade() -> None:
    # The shards of a key summed back into one row.
    op.execute(
        "CREATE TEMPORARY TABLE summed_counts AS SELECT org_id, sum(calls) AS calls, "
        "max(pairs_from) AS pairs_from FROM call_counts GROUP BY org_id"
    )
    op.execute("DELETE FROM call_counts")
    op.execute(
        "INSERT INTO call_counts (org_id, calls, pairs_from, shard) "
        "SELECT org_id, calls, pairs_from, 0 FROM summed_counts"
    )
    op.execute("DROP TABLE summed_counts")
    op.execute(
        "CREATE TEMPORARY TABLE summed_pairs AS SELECT org_id, day, since, sum(pairs) AS pairs "
        "FROM call_day_pairs_since GROUP BY org_id, day, since"
    )
    op.execute("DELETE FROM call_day_pairs_since")
    op.execute(
        "INSERT INTO call_day_pairs_since (org_id, day, since, pairs, shard) "
        "SELECT org_id, day, since, pairs, 0 FROM summed_pairs"
    )
    op.execute("DROP TABLE summed_pairs")
    for table, key in KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", list(key))
            batch.drop_column("shard")
