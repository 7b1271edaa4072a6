"""The customer portal (SPEC §12): HTML pages served by the API process at ``/``."""
