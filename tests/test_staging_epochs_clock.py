"""Epoch grid, coverage and night assignment across DST (hand-checked instants)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensord.clock import local_iso, local_ns, night_bounds, night_of, utc_offset_s
from sensord.errors import ConfigError, StagingError
from sensord.staging.epochs import (
    clean_series,
    epoch_grid,
    epoch_index,
    epoch_mean,
    interval_coverage,
    second_coverage,
)

S = 10**9


def test_epoch_grid_is_aligned_to_30_s_since_the_unix_epoch() -> None:
    g = epoch_grid(1_000_000_007 * S, 1_000_000_100 * S)
    # 1_000_000_000 s = 33_333_333 * 30 + 10, so the epoch holding it starts 10 s earlier
    assert g.start_ns == 999_999_990 * S and g.n == 4  # last epoch starts at 1e9 + 80 s
    assert g.start_ns % (30 * S) == 0
    assert g.start_ns <= 1_000_000_007 * S < g.start_ns + 30 * S
    assert g.end_ns >= 1_000_000_100 * S and g.end_ns - 30 * S < 1_000_000_100 * S
    assert epoch_grid(5 * S, 5 * S).n == 0
    idx = epoch_index(g, np.array([g.start_ns - 1, g.start_ns, g.start_ns + 31 * S, g.end_ns]))
    assert list(idx) == [-1, 0, 1, -1]


def test_clean_series_sorts_dedups_and_drops_non_finite() -> None:
    t = np.array([3, 1, 2, 2, 5, 4], dtype=np.int64)
    v = np.array([30.0, 10.0, 20.0, 99.0, np.nan, np.inf])
    tc, vc, dropped = clean_series(t, v)
    assert list(tc) == [1, 2, 3] and list(vc) == [10.0, 20.0, 30.0] and dropped == 3
    with pytest.raises(StagingError, match="differ in length"):
        clean_series(t, v[:2])


def test_epoch_mean_and_coverages() -> None:
    g = epoch_grid(0, 90 * S)
    t = np.array([0, 1, 2, 31, 89], dtype=np.int64) * S
    np.testing.assert_allclose(epoch_mean(g, t, np.array([1.0, 2, 3, 10, 7])), [2.0, 10.0, 7.0])
    np.testing.assert_allclose(second_coverage(g, t), [3 / 30, 1 / 30, 1 / 30])
    # RR intervals ending at 10 s (10 s long) and 45 s (20 s long): 10 s in epoch 0,
    # 5 s in epoch 0 and 15 s in epoch 1
    cov = interval_coverage(g, np.array([10, 45]) * S, np.array([10, 20]) * S)
    np.testing.assert_allclose(cov, [15 / 30, 15 / 30, 0.0])


@given(n_epochs=st.integers(0, 2), start_s=st.integers(-40, 40),
       offsets_ms=st.integers(0, 150).flatmap(lambda n: st.lists(
           st.one_of(st.integers(-3_000, 65_000),
                     st.integers(-3, 65).map(lambda s: s * 1000)),  # on edges
           min_size=n, max_size=n)),
       in_order=st.booleans())
@example(n_epochs=1, start_s=0, offsets_ms=[0] * 20 + [29_000] * 20, in_order=True)
def test_second_coverage_is_the_share_of_seconds_holding_a_sample(
    n_epochs: int, start_s: int, offsets_ms: list[int], in_order: bool
) -> None:
    # both ways of counting (streams in time order with more samples than seconds bisect
    # the seconds' edges), against the seconds of the samples one by one
    g = epoch_grid(start_s * S, start_s * S + n_epochs * 30 * S)
    t = g.start_ns + np.array(sorted(offsets_ms) if in_order else offsets_ms,
                              dtype=np.int64) * 10**6
    seen = {(int(x) - g.start_ns) // S for x in t.tolist()} & set(range(g.n * 30))
    want = [sum(e * 30 <= sec < e * 30 + 30 for sec in seen) / 30 for e in range(g.n)]
    assert second_coverage(g, t).tolist() == want


def test_night_assignment_across_the_spring_dst_change() -> None:
    tz = "Europe/Berlin"  # DST began 2026-03-29 at 02:00 CET -> 03:00 CEST
    evening = int(dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC).timestamp()) * S  # 23:00 CET
    morning = int(dt.datetime(2026, 3, 29, 5, 0, tzinfo=dt.UTC).timestamp()) * S  # 07:00 CEST
    assert night_of(evening, tz) == night_of(morning, tz) == dt.date(2026, 3, 28)
    assert utc_offset_s(evening, tz) == 3600 and utc_offset_s(morning, tz) == 7200
    start, end = night_bounds(dt.date(2026, 3, 28), tz)
    assert (end - start) == 23 * 3600 * S  # noon CET to noon CEST
    assert start == int(dt.datetime(2026, 3, 28, 11, 0, tzinfo=dt.UTC).timestamp()) * S
    loc = local_ns(np.array([evening, morning]), tz)
    assert list((loc - np.array([evening, morning])) // S) == [3600, 7200]
    assert local_iso(morning, tz) == "2026-03-29T07:00:00+02:00"


def test_night_assignment_across_the_autumn_change_and_bad_zone() -> None:
    tz = "America/New_York"  # DST ended 2026-11-01 at 02:00 EDT -> 01:00 EST
    start, end = night_bounds(dt.date(2026, 10, 31), tz)
    assert end - start == 25 * 3600 * S
    t = np.arange(start, end, 600 * S)
    offs = (local_ns(t, tz) - t) // S
    assert set(offs.tolist()) == {-4 * 3600, -5 * 3600}
    assert all(night_of(int(x), tz) == dt.date(2026, 10, 31) for x in t[::12])
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        night_of(start, "Mars/Olympus")


def _clean_acc_by_rows(t: np.ndarray, a: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """The rule of ``clean_acc`` written out row by row: finite, every axis within
    ``ACC_MAX_G``, the first sample of each time in arrival order, sorted by time."""
    from sensord.staging.core import ACC_MAX_G

    want_t, want_a, seen = [], [], set()
    for i in sorted(range(len(t)), key=lambda i: (t[i], i)):
        if not np.all(np.isfinite(a[i])) or t[i] in seen:
            continue
        seen.add(t[i])
        if max(abs(x) for x in a[i]) <= ACC_MAX_G:
            want_t.append(int(t[i]))
            want_a.append(a[i])
    return want_t, want_a


def test_clean_acc_keeps_exactly_the_finite_rows_within_16_g_first_of_each_time() -> None:
    # the rule written out row by row (the reference) against the vectorised cleaning
    from sensord.staging.core import ACC_MAX_G, clean_acc

    rng = np.random.default_rng(3)
    n = 3000
    t = rng.integers(0, 2000, n).astype(np.int64)  # unsorted, with repeated times
    a = rng.normal(0, 9, (n, 3))
    a[rng.random((n, 3)) < 0.01] = np.nan
    a[rng.random((n, 3)) < 0.01] = -np.inf
    a[rng.random(n) < 0.05, 1] = ACC_MAX_G  # on the limit: kept
    want_t, want_a = _clean_acc_by_rows(t, a)
    got_t, got_a, dropped = clean_acc(t, a)
    assert got_t.tolist() == want_t and 0 < len(want_t) < n
    np.testing.assert_array_equal(got_a, np.array(want_a))
    assert dropped == n - len(want_t)


@pytest.mark.parametrize(("row", "col", "value", "time"), [
    (None, 0, 0.0, None),  # a clean piece (the shortcut)
    (7, 0, 16.0, None), (7, 2, -16.0, None),  # on the limits: kept
    (7, 1, np.nextafter(16.0, 17.0), None), (0, 2, -16.5, None), (49, 0, 99.0, None),
    (7, 1, np.nan, None), (49, 2, np.nan, None), (3, 0, np.inf, None), (3, 2, -np.inf, None),
    (None, 0, 0.0, (5, 4)), (None, 0, 0.0, (5, 6)), (None, 0, 0.0, (0, 49)),  # repeated / out
])
def test_clean_acc_of_a_piece_clean_but_for_one_sample(
        row: int | None, col: int, value: float, time: tuple[int, int] | None) -> None:
    # the live daemon's common case: nothing to drop (the shortcut), or one sample to drop
    from sensord.staging.core import clean_acc

    rng = np.random.default_rng(5)
    t = 1_700_000_000 * S + np.arange(50, dtype=np.int64) * 20_000_400
    a = rng.uniform(-15.9, 15.9, (50, 3))
    if row is not None:
        a[row, col] = value
    if time is not None:
        t[time[0]] = t[time[1]]
    want_t, want_a = _clean_acc_by_rows(t, a)
    got_t, got_a, dropped = clean_acc(t, a)
    assert got_t.tolist() == want_t and dropped == 50 - len(want_t)
    np.testing.assert_array_equal(got_a, np.array(want_a))
    assert got_a.dtype == np.float64 and got_t.dtype == np.int64
    one_t, one_a, one_dropped = clean_acc(t[:1], a[:1])  # a single sample
    want_one_t, want_one_a = _clean_acc_by_rows(t[:1], a[:1])
    assert one_t.tolist() == want_one_t and one_dropped == 1 - len(want_one_t)
    np.testing.assert_array_equal(one_a, np.array(want_one_a).reshape(-1, 3))


