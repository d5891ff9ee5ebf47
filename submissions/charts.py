"""Per-step metric history drawn as small inline SVG line charts (no script, no library)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 320, 120, 6


@dataclass(frozen=True)
class LineChart:
    key: str
    points: str  # SVG polyline points
    first_step: int
    last_step: int
    low: float
    high: float
    last: float
    count: int
    dot: tuple[str, str]  # the last point, marked (a single point draws no line)
    width: int = WIDTH
    height: int = HEIGHT


def _scale(value: float, low: float, high: float, size: int) -> float:
    """Where `value` lands on an axis of `size` pixels (with padding); the middle when flat."""
    if high <= low:
        return size / 2
    return PAD + (value - low) / (high - low) * (size - 2 * PAD)


def line_charts(history: dict[str, list[dict]]) -> list[LineChart]:
    charts = []
    for key in sorted(history):
        series = [(p["step"], p["value"]) for p in history[key] if p["value"] == p["value"]]  # NaN dropped
        if not series:
            continue
        steps = [step for step, _ in series]
        values = [value for _, value in series]
        first, last, low, high = min(steps), max(steps), min(values), max(values)
        xy = [
            (f"{_scale(step, first, last, WIDTH):.1f}", f"{HEIGHT - _scale(value, low, high, HEIGHT):.1f}")
            for step, value in series
        ]
        points = " ".join(f"{x},{y}" for x, y in xy)
        charts.append(LineChart(key, points, first, last, low, high, values[-1], len(series), xy[-1]))
    return charts
