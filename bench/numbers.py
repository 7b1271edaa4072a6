"""The phone numbers the benchmarks use: parties that the sim answers, masked numbers.

Kept apart from ``bench/calls.py`` (which imports the app) so that the open-loop sender's
process starts in a fraction of a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator


def parties(first: int = 7_000_012_345) -> Iterator[int]:
    """Ordinary numbers from ``first`` on: none ends in one of the sim's magic endings
    (0000–0003)."""
    return (n for n in itertools.count(first) if n % 10_000 > 3)


def masked_numbers(block: int, count: int) -> tuple[str, ...]:
    """``count`` masked numbers (12 digits with the country code), a block of its own for
    each ``block`` from 0 to 999."""
    return tuple(f"918{block:03d}{i:06d}" for i in range(count))
