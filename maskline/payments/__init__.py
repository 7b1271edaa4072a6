"""Razorpay top-ups: orders, signatures, webhooks, refunds, credit notes (SPEC §13)."""
