"""Portal users, memberships and roles, sessions, one-time links (SPEC §12)."""
