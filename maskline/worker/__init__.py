"""The job runner: background work claimed by lease, for the engine and the workers.

Below the domains that use it, above ``kit``: it knows rows and leases, no domain.
"""
