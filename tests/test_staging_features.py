"""Feature building blocks against independent references: brute-force window sums and
means written out per epoch, ``scipy.stats.rankdata`` and ``scipy.signal.fftconvolve``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensord.staging import features

finite_or_nan = st.one_of(st.floats(-50, 50, allow_nan=False), st.just(math.nan))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=60))
def test_average_ranks_equal_scipy_rankdata(values: list[int]) -> None:
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)  # few distinct values: many ties
    np.testing.assert_array_equal(features.average_ranks(x), rankdata(x))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=60, unique=True))
def test_average_ranks_without_ties_equal_scipy_rankdata(values: list[float]) -> None:
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)  # distinct values: the path without ties
    np.testing.assert_array_equal(features.average_ranks(x), rankdata(x))


def brute_window_mean(x: list[float], w: int) -> list[float]:
    """Centred mean over w epochs of the finite values, the ends repeated outward."""
    h = w // 2
    out = []
    for i in range(len(x)):
        window = [x[min(max(j, 0), len(x) - 1)] for j in range(i - h, i + h + 1)]
        finite = [v for v in window if not math.isnan(v)]
        out.append(sum(finite) / len(finite) if finite else math.nan)
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_or_nan, min_size=1, max_size=120), st.sampled_from([5, 11, 21, 41]))
def test_window_means_of_stacked_series_equal_the_brute_force(values: list[float], w: int) -> None:
    x = np.asarray(values)
    other = np.where(np.isnan(x), 1.0, np.nan)  # NaN exactly where x is finite
    means = features._WindowMeans([x, other], (w,))
    np.testing.assert_allclose(means.mean(0, w), brute_window_mean(values, w), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(means.mean(1, w), brute_window_mean(list(other), w),
                               rtol=1e-9, atol=1e-9)


def test_context_std_and_shifts_by_hand() -> None:
    x = np.arange(100, dtype=np.float64)
    x[40:45] = np.nan
    cols = features.context_columns(x)
    assert len(cols) == 1 + 5 + 2 + 6 + 1
    m21 = np.asarray(brute_window_mean(list(x), 21))
    i = 70  # window 60..80, no gap: std of 21 consecutive integers
    assert cols[3][i] == m21[i] == 70.0
    assert math.isclose(cols[6][i], float(np.std(np.arange(65, 76))))  # 11-epoch std
    assert cols[8][i] == m21[i - 10] and cols[9][i] == m21[i + 10]  # 10 epochs past/future
    assert cols[14][i] == 80.0  # 21-epoch maximum
    assert math.isnan(cols[0][42]) and math.isfinite(cols[1][42])  # own value stays missing


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1000, allow_nan=False), st.just(math.nan)),
                min_size=1, max_size=1500), st.integers(1, 60))
def test_weighted_sums_at_epoch_middles_equal_direct_sums(values: list[float],
                                                          n_epochs: int) -> None:
    from scipy.signal import fftconvolve

    x = np.asarray(values)
    kernel = features._window_kernel(features.COUNT_SIGMA_S)
    num, den = features._weighted_at_centres(x, kernel, n_epochs)
    half = kernel.size // 2
    for k in range(n_epochs):
        c = min(15 + 30 * k, x.size - 1)
        want_num = want_den = 0.0
        for j in range(max(0, c - half), min(x.size, c + half + 1)):
            if not math.isnan(values[j]):
                want_num += values[j] * kernel[j - c + half]
                want_den += kernel[j - c + half]
        assert math.isclose(num[k], want_num, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(den[k], want_den, rel_tol=1e-9, abs_tol=1e-9)
    full = fftconvolve(np.nan_to_num(x), kernel, mode="same")  # the textbook convolution
    centres = np.minimum(15 + 30 * np.arange(n_epochs), x.size - 1)
    np.testing.assert_allclose(num, full[centres], rtol=1e-9, atol=1e-6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-3, 3)),
                min_size=1, max_size=300))
def test_percentile_90_equals_numpy(values: list[float]) -> None:
    x = np.asarray(values, dtype=np.float64)  # small integers: ties at the order statistics
    got = features.percentile_90(x)
    want = float(np.percentile(x, 90))
    assert got == want or (math.isnan(got) and math.isnan(want)), (got, want)


def test_percentile_90_of_nothing_or_nan_is_nan() -> None:
    assert math.isnan(features.percentile_90(np.zeros(0)))
    assert math.isnan(features.percentile_90(np.array([1.0, math.nan, 3.0])))
    assert math.isnan(float(np.percentile(np.array([1.0, math.nan, 3.0]), 90)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(math.nan)),
                min_size=1, max_size=400))
def test_nan_mean_std_equal_numpy(values: list[float]) -> None:
    x = np.asarray(values, dtype=np.float64)
    mean, std = features.nan_mean_std(x)
    if np.isnan(x).all():
        assert math.isnan(mean) and math.isnan(std)
        return
    assert mean == float(np.nanmean(x)) and std == float(np.nanstd(x)), (mean, std)


def _night_series(n_epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1-Hz heart rate and counts of a night, with missing seconds and a long gap."""
    rng = np.random.default_rng(seed)
    n_s = 30 * n_epochs
    hr = 60 + 8 * np.sin(np.arange(n_s) / 400) + rng.normal(0, 2, n_s)
    hr[rng.random(n_s) < 0.05] = np.nan
    hr[3000:3500] = np.nan
    counts = np.abs(rng.normal(0, 40, n_s))
    counts[rng.random(n_s) < 0.03] = np.nan
    return hr, counts


def test_walch_features_do_not_depend_on_how_many_windows_are_gathered_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hr, counts = _night_series(700, seed=5)
    want_hr = features.hr_feature(hr, 700)
    want_counts = features.count_feature(counts, 700)
    assert np.isfinite(want_hr).sum() > 600 and np.isfinite(want_counts).sum() > 600
    for epochs_at_once in (1, 7, 256):  # the bound in bytes, for 3 rows of the box kernel
        monkeypatch.setattr(features, "_GATHER_BYTES", epochs_at_once * 3 * 599 * 8)
        np.testing.assert_array_equal(features.hr_feature(hr, 700), want_hr)
        np.testing.assert_array_equal(features.count_feature(counts, 700), want_counts)
        np.testing.assert_array_equal(features.hr_feature(hr, 700, 650)[650:], want_hr[650:])


def test_hr_feature_of_a_night_gathers_its_windows_in_bounded_blocks() -> None:
    """The scoring worker's peak was here: an 8-h night's 960 windows of 599 s for three
    rows at once, 13.8 MB of float64."""
    import tracemalloc

    hr, _ = _night_series(960, seed=6)
    tracemalloc.start()
    try:
        features.hr_feature(hr, 960)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"hr_feature of an 8-h night peaked at {peak / 2**20:.1f} MB"
