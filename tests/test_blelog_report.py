"""The load report's gaps and coverage against a plain-Python reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sensord.pipeline import GAP_FACTOR, GAP_MIN_S, _stream_report


def _reference(t: list[int], start: int, end: int) -> tuple[list[tuple[int, int]], float]:
    dts = sorted(b - a for a, b in itertools.pairwise(t))
    thr = max(GAP_MIN_S * 1e9, GAP_FACTOR * dts[len(dts) // 2])
    gaps = []
    if t[0] - start > thr:
        gaps.append((start, t[0]))
    for a, b in itertools.pairwise(t):
        if b - a > thr:
            gaps.append((a, b))
    if end - t[-1] > thr:
        gaps.append((t[-1], end))
    return gaps, 1 - sum(b - a for a, b in gaps) / (end - start)


@pytest.mark.parametrize("n", [50, 2_000_000])
def test_gaps_and_coverage_match_the_reference(n: int) -> None:
    rng = np.random.default_rng(n)
    dt = np.full(n, 20_000_000, dtype=np.int64) + rng.integers(-1000, 1000, n)
    holes = rng.choice(np.arange(1, n), size=7, replace=False)
    dt[holes] = rng.integers(11, 500, 7) * 10**9  # dropouts of 11-500 s
    dt[rng.choice(n, size=5, replace=False)] += 5 * 10**9  # 5-s hiccups: not gaps
    t = 10**18 + np.cumsum(dt)
    start, end = int(t[0]) - 60 * 10**9, int(t[-1]) + 3 * 10**9
    rep = _stream_report("d", "acc", t, start, end)
    gaps, cov = _reference(t.tolist(), start, end)
    assert list(rep.gaps) == gaps
    assert rep.coverage == pytest.approx(cov, abs=1e-12)
    assert len(gaps) == 8  # 7 holes + the leading minute
