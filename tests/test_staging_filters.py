"""The numpy filters that replace scipy in the scoring path, against scipy itself and an
extended-precision recursion (independent references), and the scoring path without scipy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage, signal

from sensord.errors import StagingError
from sensord.staging import filters, motion

RATE_CONVERTER_P = -(np.pi - 6) / (np.pi + 6)  # ActiGraph's first-order low-pass at up = 3


def long_double_lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """The transposed direct form II by the textbook, sample by sample in 80-bit floats."""
    bl = np.asarray(b, dtype=np.longdouble) / np.longdouble(a[0])
    al = np.asarray(a, dtype=np.longdouble) / np.longdouble(a[0])
    s = zi.astype(np.longdouble).copy()
    xl = x.astype(np.longdouble)
    y = np.empty(x.shape, dtype=np.longdouble)
    for k in range(x.shape[1]):
        out = s[:, 0] + bl[0] * xl[:, k]
        s[:, :-1] = s[:, 1:] + bl[1:-1] * xl[:, k, None] - al[1:-1] * out[:, None]
        s[:, -1] = bl[-1] * xl[:, k] - al[-1] * out
        y[:, k] = out
    return y


@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 130, 3000])
def test_band_pass_matches_an_extended_precision_recursion_and_lfilter(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(3, n))
    zi = signal.lfilter_zi(motion._BPF_B, motion._BPF_A)[None, :] * rng.normal(size=(3, 1))
    y, zf = filters.iir_filter(motion._BPF_B, motion._BPF_A, x, zi)
    exact = long_double_lfilter(motion._BPF_B, motion._BPF_A, x, zi).astype(np.float64)
    y_sp, zf_sp = signal.lfilter(motion._BPF_B, motion._BPF_A, x, zi=zi, axis=1)
    # scipy's own error against the exact recursion is about 1e-12 here (the filter's
    # state cancels); the block form must stay within a few times that, not grow with n
    assert np.max(np.abs(y - exact)) < 2e-11
    assert np.max(np.abs(y - y_sp)) < 2e-11
    assert np.max(np.abs(zf - zf_sp)) < 2e-11


def test_first_order_filter_is_exact_to_rounding() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5000))
    zi = rng.normal(size=(3, 1))
    y, zf = filters.iir_filter([1.0], [1.0, -RATE_CONVERTER_P], x, zi)
    y_sp, zf_sp = signal.lfilter([1.0], [1.0, -RATE_CONVERTER_P], x, zi=zi, axis=1)
    assert np.max(np.abs(y - y_sp)) < 1e-14 and np.max(np.abs(zf - zf_sp)) < 1e-14


def test_pieces_with_carried_state_equal_one_call() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 2000))
    whole, zf_whole = filters.iir_filter(motion._BPF_B, motion._BPF_A, x, np.zeros((2, 8)))
    parts, state = [], np.zeros((2, 8))
    for lo, hi in [(0, 1), (1, 64), (64, 300), (300, 301), (301, 2000)]:
        y, state = filters.iir_filter(motion._BPF_B, motion._BPF_A, x[:, lo:hi], state)
        parts.append(y)
    assert np.max(np.abs(np.concatenate(parts, axis=1) - whole)) < 1e-11
    assert np.max(np.abs(state - zf_whole)) < 1e-11
    empty, same = filters.iir_filter(motion._BPF_B, motion._BPF_A, x[:, :0], state)
    assert empty.shape == (2, 0) and np.array_equal(same, state)


def test_a_filter_kept_between_calls_equals_a_fresh_one_bit_for_bit() -> None:
    # an IirFilter keeps the powers of its poles that earlier calls needed (per length of
    # the last, shorter block; per step of the scan): pieces of every length, in an order
    # that reuses and extends them, give what a fresh filter (iir_filter) gives
    rng = np.random.default_rng(6)
    for b, a in [(motion._BPF_B, motion._BPF_A), ([1.0], [1.0, -RATE_CONVERTER_P**3])]:
        kept = filters.IirFilter(b, a)
        for n in [130, 1, 63, 64, 65, 700, 4100, 130, 3000, 1, 700, 0,
                  *rng.integers(1, 400, 40).tolist()]:
            x = rng.normal(size=(3, n))
            zi = rng.normal(size=(3, kept.order))
            y, zf = kept(x, zi)
            y_fresh, zf_fresh = filters.iir_filter(b, a, x, zi)
            assert np.array_equal(y, y_fresh) and np.array_equal(zf, zf_fresh)
            assert not np.shares_memory(zf, zi)


def test_steady_state_equals_lfilter_zi_and_starts_without_transient() -> None:
    zi = filters.iir_steady_state(motion._BPF_B, motion._BPF_A)
    assert np.allclose(zi, signal.lfilter_zi(motion._BPF_B, motion._BPF_A), rtol=1e-12, atol=1e-14)
    # a constant input started from the steady state stays at the DC gain (0 for a band-pass)
    y, _ = filters.iir_filter(motion._BPF_B, motion._BPF_A, np.full((1, 500), 2.0), 2.0 * zi[None])
    assert np.max(np.abs(y - 2.0 * motion._BPF_B.sum() / motion._BPF_A.sum())) < 1e-10


def test_bad_coefficients_and_shapes_raise() -> None:
    with pytest.raises(StagingError, match=r"a\[0\]"):
        filters.iir_filter([1.0], [0.0, 1.0], np.zeros((1, 4)), np.zeros((1, 1)))
    with pytest.raises(StagingError, match="rows, n"):
        filters.iir_filter([1.0], [1.0, 0.5], np.zeros(4), np.zeros((1, 1)))
    with pytest.raises(StagingError, match="window"):
        filters.running_mean_nearest(np.zeros(4), 0)


def test_rate_converter_recursion_at_the_input_rate_matches_lfilter() -> None:
    rng = np.random.default_rng(5)
    u = rng.normal(size=(3, 3000))
    before = rng.normal(size=3)
    q = RATE_CONVERTER_P**3
    e, _ = filters.iir_filter([1.0], [1.0, -q], u, q * before[:, None])
    ref, _ = signal.lfilter([1.0], [1.0, -q], u, zi=q * before[:, None], axis=1)
    assert np.max(np.abs(e - ref)) < 1e-14


@pytest.mark.parametrize("w", [1, 2, 3, 5, 11, 21, 41, 81, 301])
def test_running_mean_and_max_equal_ndimage_bit_for_bit(w: int) -> None:
    rng = np.random.default_rng(w)
    x = rng.normal(size=(150, 4))
    x[10:30, 1] = 0.0
    x[40:45, 2] = 1e6  # large values: the running sum's rounding shows if the order differs
    assert np.array_equal(filters.running_mean_nearest(x, w),
                          ndimage.uniform_filter1d(x, w, axis=0, mode="nearest"))
    col = np.where(rng.random(150) < 0.2, -np.inf, x[:, 0])
    assert np.array_equal(filters.running_max_nearest(col, w),
                          ndimage.maximum_filter1d(col, w, mode="nearest"))


@pytest.mark.parametrize("n", [1, 2, 3, 64, 255, 1200])
def test_periodic_hann_equals_scipy(n: int) -> None:
    assert np.array_equal(filters.periodic_hann(n), signal.get_window("hann", n))


def test_scoring_path_runs_without_importing_scipy() -> None:
    code = """
import sys
import numpy as np
from sensord.daemon import provisional_job
from sensord.model import AccStream, BeatStream, HeartRateStream, NightStreams
t0 = 1_700_000_000 * 10**9
n = 600
t = t0 + np.arange(n, dtype=np.int64) * 10**9
rng = np.random.default_rng(0)
night = NightStreams(t0, t0 + n * 10**9, hr=HeartRateStream(t, 60 + rng.normal(size=n)),
                     beats=BeatStream(t, 1000 + 20 * rng.normal(size=n)))
ta = t0 + np.arange(n * 50, dtype=np.int64) * 20_000_000
acc = AccStream(ta, rng.normal(scale=0.05, size=(n * 50, 3)) + [0, 0, 1])
end = t0 + n * 10**9
body, epochs, _ = provisional_job("t", night, "chest", acc, "Europe/Zurich", "p", t0, end)
assert epochs > 0 and body.startswith(b"epoch,"), (epochs, body[:40])
print(sorted(m for m in sys.modules if m.split(".")[0] == "scipy"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("shape,w", [((10,), 1), ((10,), 10), ((37,), 11), ((3, 50), 7),
                                     ((2, 4, 9), 9)])
def test_windows_equal_sliding_window_view(shape: tuple[int, ...], w: int) -> None:
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    got = filters.windows(x, w)
    np.testing.assert_array_equal(got, np.lib.stride_tricks.sliding_window_view(x, w, axis=-1))
    assert not got.flags.writeable
    strided = x[..., ::2]  # a view with a step: the strides must follow it
    np.testing.assert_array_equal(filters.windows(strided, 1),
                                  np.lib.stride_tricks.sliding_window_view(strided, 1, axis=-1))
    flat = x.reshape(-1)
    tail = flat[1:]  # contiguous, but not at the start of its buffer
    read_only = flat.copy()
    read_only.flags.writeable = False
    for view in (tail, read_only):
        np.testing.assert_array_equal(filters.windows(view, 1),
                                      np.lib.stride_tricks.sliding_window_view(view, 1))
    np.testing.assert_array_equal(filters.windows(tail, tail.size),
                                  np.lib.stride_tricks.sliding_window_view(tail, tail.size))


def test_windows_that_do_not_fit_are_refused() -> None:
    with pytest.raises(StagingError, match="window of 5 samples"):
        filters.windows(np.zeros(4), 5)
    with pytest.raises(StagingError):
        filters.windows(np.zeros(4), 0)
