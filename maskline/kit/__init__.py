"""Small shared infrastructure: no domain rules live here."""
