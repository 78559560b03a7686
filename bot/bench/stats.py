"""Pure maths for the bench: percentiles, latency summaries, memory slopes. No I/O, so it is unit-tested."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's default).

    None for no values. ``percentile([1, 2, 3, 4], 50) == 2.5``.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    data = sorted(values)
    if not data:
        return None
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(data[low])
    return data[low] + (data[high] - data[low]) * (position - low)


def summarise_latencies(latencies_ms: Iterable[float]) -> dict:
    """count, mean, p50, p95, p99 and max of latencies in milliseconds (None when there are none)."""
    data = sorted(latencies_ms)
    return {
        "count": len(data),
        "mean": (sum(data) / len(data)) if data else None,
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": data[-1] if data else None,
    }


def linear_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x; None with fewer than two distinct x values."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def memory_trend(samples: Sequence[tuple[float, float]], warmup_fraction: float = 0.25) -> dict:
    """How resident memory moves over a soak: ``samples`` are (seconds, MiB).

    The first ``warmup_fraction`` of the run is left out of the slope: allocators and caches grow while the
    first conversations arrive, and that is not a leak. Returns the slope (MiB per minute), the start and
    end values and the total growth over the measured window.
    """
    if not samples:
        return {"slope_mib_per_min": None, "start_mib": None, "end_mib": None, "growth_mib": None, "n": 0}
    ordered = sorted(samples)
    t0, t1 = ordered[0][0], ordered[-1][0]
    cut = t0 + (t1 - t0) * warmup_fraction
    window = [s for s in ordered if s[0] >= cut] or ordered
    slope = linear_slope(window)
    return {
        "slope_mib_per_min": slope * 60 if slope is not None else None,
        "start_mib": window[0][1],
        "end_mib": window[-1][1],
        "growth_mib": window[-1][1] - window[0][1],
        "n": len(window),
    }


def is_flat(trend: dict, max_slope_mib_per_min: float = 2.0) -> bool:
    """Memory counts as flat when it grows by less than ``max_slope_mib_per_min`` after warm-up."""
    slope = trend.get("slope_mib_per_min")
    return slope is not None and slope < max_slope_mib_per_min


def throughput(count: int, seconds: float) -> float | None:
    """Messages per second (None for an empty or zero-length run)."""
    return count / seconds if seconds > 0 and count else None


def count_stored(sent: Iterable[str], stored: Iterable[str]) -> dict:
    """Compare the disclosure sender ids sent with those stored: missing, duplicated and exactly-once ok."""
    sent_set = set(sent)
    counts: dict[str, int] = {}
    for sender in stored:
        if sender in sent_set:
            counts[sender] = counts.get(sender, 0) + 1
    missing = sorted(s for s in sent_set if s not in counts)
    duplicated = sorted(s for s, n in counts.items() if n > 1)
    return {
        "sent": len(sent_set),
        "stored": sum(counts.values()),
        "missing": missing,
        "duplicated": duplicated,
        "exactly_once": not missing and not duplicated,
    }
