"""Daily bar charts drawn on the server as SVG (no chart library, no script): the
geometry here, the markup in ``_chart.html``."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 720
HEIGHT = 200
TOP = 16
BOTTOM = 24  # room for the day labels
LEFT = 36  # room for the scale


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the day, as the axis shows it
    title: str  # what a pointer or a screen reader gets


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    top_value: int
    labels_every: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    base: int = HEIGHT - BOTTOM
    top: int = TOP


def _nice_top(peak: int) -> int:
    """The scale's top: the peak rounded up to 1, 2 or 5 times a power of ten."""
    if peak <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= peak:
                return factor * step
        step *= 10


def daily_bars(days: list[tuple[str, int]], *, unit: str) -> Chart:
    """One bar per ``(ISO date, value)``, oldest first, on a scale from zero."""
    top_value = _nice_top(max((v for _d, v in days), default=0))
    plot = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bars = []
    for i, (day, value) in enumerate(days):
        height = plot * value / top_value
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 1),
                y=round(HEIGHT - BOTTOM - height, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                label=day[5:],
                title=f"{day}: {value} {unit}",
            )
        )
    # At most about ten labels under the bars, however long the range.
    return Chart(bars=bars, top_value=top_value, labels_every=max(1, -(-len(days) // 10)))
