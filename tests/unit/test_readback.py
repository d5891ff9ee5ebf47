"""What of a run's metric history is kept: every point up to a limit, then an even thinning that
keeps the first and the last point."""

from tracking.readback import MAX_POINTS, thin


def points(n: int) -> list[dict]:
    return [{"step": i, "value": i / 2, "timestamp": 1000 + i} for i in range(n)]


def test_a_short_history_is_kept_whole():
    assert thin(points(MAX_POINTS)) == points(MAX_POINTS)


def test_a_long_history_is_thinned_evenly_keeping_both_ends():
    kept = thin(points(25_000))
    steps = [p["step"] for p in kept]
    assert len(kept) == MAX_POINTS
    assert steps[0] == 0 and steps[-1] == 24_999
    assert steps == sorted(set(steps))  # no point twice, in order
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    assert gaps <= {25, 26}  # evenly spread
