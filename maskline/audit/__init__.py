"""The organisation's audit log: who did what, when, from which address (SPEC §12)."""
