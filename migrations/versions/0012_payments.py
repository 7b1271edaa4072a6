"""payments: Razorpay top-ups, credit notes and their counter, the audit log; the
billing profile (legal name, address) and the invoice's recipient address

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from maskline.kit.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("legal_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("billing_address", sa.String(500), nullable=True))
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("recipient_address", sa.String(500), nullable=True))
    op.create_table(
        "topups",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("order_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("invoice_id", sa.String(32), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("flag_reason", sa.String(200), nullable=True),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('created', 'paid', 'expired', 'flagged')",
            name=op.f("ck_topups_status_known"),
        ),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= amount", name=op.f("ck_topups_refunded_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_topups_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topups")),
        sa.UniqueConstraint("order_id", name=op.f("uq_topups_order_id")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_topups_payment_id")),
    )
    op.create_index(op.f("ix_topups_org_id"), "topups", ["org_id"])
    op.create_table(
        "credit_note_counters",
        sa.Column("financial_year", sa.String(4), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("financial_year", name=op.f("pk_credit_note_counters")),
    )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("credit_note_number", sa.String(20), nullable=False),
        sa.Column("credit_note_date", sa.String(10), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("topup_id", sa.String(32), nullable=False),
        sa.Column("refund_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cgst", sa.BigInteger(), nullable=False),
        sa.Column("sgst", sa.BigInteger(), nullable=False),
        sa.Column("igst", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("shortfall", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_credit_notes_org_id_organisations")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["topup_id"], ["topups.id"], name=op.f("fk_credit_notes_topup_id_topups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("credit_note_number", name=op.f("uq_credit_notes_credit_note_number")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_credit_notes_refund_id")),
    )
    op.create_index(op.f("ix_credit_notes_org_id"), "credit_notes", ["org_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_audit_events_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_org_id_id", "audit_events", ["org_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_org_id_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_credit_notes_org_id"), table_name="credit_notes")
    op.drop_table("credit_notes")
    op.drop_table("credit_note_counters")
    op.drop_index(op.f("ix_topups_org_id"), table_name="topups")
    op.drop_table("topups")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("recipient_address")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("legal_name")
        batch.drop_column("billing_address")
