"""Benchmarks that print figures (``make bench``); see docs/benchmarks.md."""
