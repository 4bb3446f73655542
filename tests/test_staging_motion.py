"""Motion features: ActiGraph counts identical to the agcounts package (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from agcounts.extract import get_counts

from sensord.errors import StagingError
from sensord.model import AccStream, CountStream
from sensord.staging import filters, motion
from sensord.staging.motion import (
    SUPPORTED_HZ,
    CountStreamer,
    SegmentCounter,
    activity_counts,
    angle_deg,
    counts_from_stream,
    enmo_g,
)

DATA = "../shared/data/walch2019/raw/46343_acceleration_snippet.txt"


def synthetic(fs: int, seconds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = fs * seconds + 3
    walk = np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0)
    bursts = rng.normal(0, 0.4, (n, 3)) * (rng.random((n, 1)) < 0.3)
    return walk + bursts + np.array([0.0, 0.0, 1.0])


@pytest.mark.parametrize("fs", SUPPORTED_HZ)
def test_counts_equal_agcounts(fs: int) -> None:
    acc = synthetic(fs, 120, fs)
    ours = activity_counts(acc, fs)
    ref = get_counts(acc, freq=fs, epoch=1)
    assert ours.shape == ref.shape
    assert ours.sum() > 100  # the signal moves: the comparison is not all zeros
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(activity_counts(acc, fs, epoch_s=10), get_counts(acc, fs, 10))


def test_counts_equal_agcounts_across_processing_chunks() -> None:
    # 45 min at 50 Hz = 135,000 samples: three internal chunks (65,536)
    acc = synthetic(50, 2700, 9)
    np.testing.assert_array_equal(activity_counts(acc, 50), get_counts(acc, freq=50, epoch=1))


def test_drifting_stream_counts_equal_agcounts_of_the_interpolated_grid() -> None:
    # 60 min at 50 Hz with a 40 ppm clock drift: counts_from_stream interpolates onto the
    # 50-Hz grid and counts it in chunks; the reference interpolates the whole hour with
    # numpy and hands it to agcounts at once
    fs, n = 50, 50 * 3600
    t = (1_700_000_000 * 10**9 + np.round(np.arange(n) * 2e7 * (1 + 40e-6))).astype(np.int64)
    acc = synthetic(fs, 3600, 5)[:n]
    ours = counts_from_stream(AccStream(t, acc))
    rel = (t - t[0]).astype(np.float64)
    n_grid = int(np.floor(rel[-1] / 2e7 + 0.5)) + 1
    grid = np.column_stack([np.interp(np.arange(n_grid) * 2e7, rel, acc[:, k]) for k in range(3)])
    ref = get_counts(grid, freq=fs, epoch=1)
    assert ours.t_ns.size == ref.shape[0] > 3500
    np.testing.assert_allclose(ours.counts, np.sqrt((ref.astype(float) ** 2).sum(axis=1)))


def test_counts_equal_agcounts_on_real_watch_data() -> None:
    raw = np.loadtxt(DATA)
    # the snippet is ~50 Hz with jittered stamps; count its samples as a 50-Hz series
    acc = raw[:, 1:4]
    ours = activity_counts(acc, 50)
    np.testing.assert_array_equal(ours, get_counts(acc, freq=50, epoch=1))
    assert ours.sum() > 0


def test_stream_counts_on_a_uniform_stream_match_the_array_path() -> None:
    fs = 50
    acc = synthetic(fs, 60, 3)
    t = 1_700_000_000 * 10**9 + np.arange(acc.shape[0], dtype=np.int64) * (10**9 // fs)
    cs = counts_from_stream(AccStream(t, acc))
    ref = get_counts(acc, freq=fs, epoch=1)
    np.testing.assert_allclose(cs.counts, np.sqrt((ref.astype(float) ** 2).sum(axis=1)))
    assert cs.t_ns[0] == t[0] and np.all(np.diff(cs.t_ns) == 10**9)


def test_stream_counts_split_at_gaps_and_tolerate_tiny_streams() -> None:
    fs = 30
    acc = synthetic(fs, 40, 4)
    t = np.arange(acc.shape[0], dtype=np.int64) * (10**9 // fs)
    t[600:] += 60 * 10**9  # a one-minute gap after 20 s
    cs = counts_from_stream(AccStream(t, acc))
    assert cs.t_ns.size == 20 + 20 and cs.t_ns[20] == t[600]
    tiny = counts_from_stream(AccStream(t[:5], acc[:5]))
    assert tiny.t_ns.size == 0


def _streamed(t: np.ndarray, acc: np.ndarray, fs: float, seed: int) -> CountStream:
    """Counts of a CountStreamer fed in random pieces (1..3000 samples), then closed."""
    rng = np.random.default_rng(seed)
    streamer = CountStreamer(fs)
    parts, i = [], 0
    while i < t.size:
        k = int(rng.integers(1, 3000))
        parts.append(streamer.feed(t[i : i + k], acc[i : i + k]))
        i += k
    parts.append(streamer.close())
    return CountStream(np.concatenate([p.t_ns for p in parts]),
                       np.concatenate([p.counts for p in parts]), 1.0)


@pytest.mark.parametrize(("fs", "drift"), [(50, 20e-6), (50, 0.0), (100, -30e-6), (60, 0.0),
                                           (30, 10e-6), (25, 0.0)])
def test_streamed_counts_equal_the_whole_stream_counts(fs: int, drift: float) -> None:
    # a 30-min stream with a clock drift (the interpolated path) or exactly on the grid,
    # a 10-s dropout and a sub-second one (two breaks, three segments)
    n = fs * 1800
    t = (1_700_000_000 * 10**9 + np.round(np.arange(n) * (1e9 / fs) * (1 + drift))
         ).astype(np.int64)
    keep = np.ones(n, dtype=bool)
    keep[fs * 300 : fs * 310] = False
    keep[fs * 900 : fs * 900 + fs // 2 + 3] = False
    t = t[keep]
    acc = synthetic(fs, 1800, fs)[: n][keep]
    whole = counts_from_stream(AccStream(t, acc))
    streamed = _streamed(t, acc, fs, seed=fs)
    assert whole.t_ns.size > 1700 and whole.counts.sum() > 1000
    np.testing.assert_array_equal(streamed.t_ns, whole.t_ns)
    np.testing.assert_array_equal(streamed.counts, whole.counts)


def test_streamed_counts_equal_agcounts() -> None:
    fs = 50
    acc = synthetic(fs, 300, 11)
    t = 1_700_000_000 * 10**9 + np.arange(acc.shape[0], dtype=np.int64) * (10**9 // fs)
    ref = get_counts(acc, freq=fs, epoch=1)
    streamed = _streamed(t, acc, fs, seed=2)
    np.testing.assert_allclose(streamed.counts[: ref.shape[0]],
                               np.sqrt((ref.astype(float) ** 2).sum(axis=1)))
    assert ref.sum() > 100


def test_streamer_refuses_old_samples_and_bad_rates() -> None:
    streamer = CountStreamer(50)
    t = np.arange(100, dtype=np.int64) * 20_000_000
    streamer.feed(t, np.zeros((100, 3)))
    with pytest.raises(StagingError, match="newer than the last"):
        streamer.feed(t[-1:], np.zeros((1, 3)))
    with pytest.raises(StagingError, match="positive sampling rate"):
        CountStreamer(0)


def test_bad_arrays_raise_staging_errors() -> None:
    with pytest.raises(StagingError, match="rate"):
        activity_counts(np.zeros((100, 3)), 25)
    with pytest.raises(StagingError, match="shape"):
        activity_counts(np.zeros((100, 2)), 30)
    with pytest.raises(StagingError, match="NaN"):
        activity_counts(np.full((100, 3), np.nan), 30)


def test_enmo_and_angle_by_hand() -> None:
    acc = np.array([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.5], [0.3, 0.4, 0.0]])
    np.testing.assert_allclose(enmo_g(acc), [0.0, 0.0, 0.5, 0.0])
    flat = np.tile([[0.0, 0.0, 1.0]], (50, 1))
    np.testing.assert_allclose(angle_deg(flat, 10), 90.0)
    side = np.tile([[1.0, 0.0, 1.0]], (50, 1))
    np.testing.assert_allclose(angle_deg(side, 10), 45.0)


def _fed_in_pieces(t: np.ndarray, acc: np.ndarray, fs_hz: float, seed: int) -> CountStream:
    """A SegmentCounter fed in random pieces (1..40,000 samples), then closed."""
    rng = np.random.default_rng(seed)
    counter = SegmentCounter(fs_hz)
    i = 0
    while i < t.size:
        k = int(rng.integers(1, 40_000))
        counter.feed(t[i : i + k], acc[i : i + k])
        i += k
    return counter.close()


@pytest.mark.parametrize("fs", [30, 50, 70, 90])
def test_segment_counter_counts_samples_near_the_grid_as_they_are(fs: int) -> None:
    # 25 min, every sample within 4 % of a period of the grid (exactly on it for the first
    # 5 min): counted as they are, i.e. activity_counts of the samples themselves
    rng = np.random.default_rng(fs)
    n = fs * 1500
    k = np.arange(n)
    jitter = np.where(k < fs * 300, 0.0, rng.uniform(-0.04, 0.04, n))
    t = 1_700_000_000 * 10**9 + np.round((k + jitter) * (1e9 / fs)).astype(np.int64)
    acc = synthetic(fs, 1500, fs)[:n]
    got = _fed_in_pieces(t, acc, fs, seed=fs)
    ref = activity_counts(acc, fs)
    assert ref.sum() > 1000
    np.testing.assert_array_equal(got.counts, np.sqrt((ref.astype(float) ** 2).sum(axis=1)))
    np.testing.assert_array_equal(got.t_ns, t[0] + np.arange(ref.shape[0]) * 10**9)
    np.testing.assert_array_equal(counts_from_stream(AccStream(t, acc)).counts, got.counts)


@pytest.mark.parametrize("fs", [30, 50, 70, 90])
def test_segment_counter_interpolates_once_one_sample_is_off_the_grid(fs: int) -> None:
    # the same, but one sample 20 min in is 10 % of a period off: the whole segment,
    # from its first sample, is interpolated onto the grid (the grid's counts)
    rng = np.random.default_rng(fs + 1)
    n = fs * 1500
    k = np.arange(n)
    jitter = np.where(k < fs * 300, 0.0, rng.uniform(-0.04, 0.04, n))
    jitter[fs * 1200] = 0.1
    t = 1_700_000_000 * 10**9 + np.round((k + jitter) * (1e9 / fs)).astype(np.int64)
    acc = synthetic(fs, 1500, fs + 1)[:n]
    got = _fed_in_pieces(t, acc, fs, seed=fs)
    rel = (t - t[0]).astype(np.float64)
    n_grid = int(np.floor(rel[-1] / (1e9 / fs) + 0.5)) + 1
    g = np.arange(n_grid) * (1e9 / fs)
    grid = np.stack([np.interp(g, rel, acc[:, j]) for j in range(3)], axis=1)
    ref = activity_counts(grid, fs)
    np.testing.assert_array_equal(got.counts, np.sqrt((ref.astype(float) ** 2).sum(axis=1)))
    assert not np.array_equal(ref, activity_counts(acc, fs))  # the two readings differ


@pytest.mark.parametrize("fs", [40, 50, 70, 80, 100])
def test_rate_conversion_in_pieces_equals_the_gathered_formula_bit_for_bit(fs: int) -> None:
    # the rate converter (_low_passed, before _to_30hz rounds to 1 mg, which would hide a
    # change of the last bit) forms the kept samples by one strided product per offset in
    # a block; the reference gathers each kept stuffed sample's block and offset by index
    # (the formula written out), piece by piece from the same state, pieces of every phase
    up, down = motion._FACTORS[fs]
    a_fp = np.pi / (np.pi + 2 * up)
    p = -(np.pi - 2 * up) / (np.pi + 2 * up)
    gain = np.array([1.0] + [p**r + p ** (r - 1) for r in range(1, up)])
    q = p**up
    x = synthetic(fs, 500, fs).T
    counter = motion._GridCounter(fs)
    rng = np.random.default_rng(fs)
    sizes = [1, 1, 2, 3, 4, 5, 63, 64, 65, 1, 2, 1499, 1500, 1501,
             *rng.integers(1, 2000, 6).tolist()]
    lo, block_end = 0, np.zeros(3)
    for n in sizes:
        piece = x[:, lo : lo + n]
        drive = (a_fp * up) * piece
        ends, _ = filters.iir_filter([1.0], [1.0, -q], gain[-1] * drive, q * block_end[:, None])
        prev = np.concatenate((block_end[:, None], ends[:, :-1]), axis=1)
        block_end = ends[:, -1].copy()
        kept = np.arange((-lo * up) % down, n * up, down)
        block, offset = kept // up, kept % up
        want = (p ** np.arange(1, up + 1))[offset] * prev[:, block] + gain[offset] * drive[:, block]
        np.testing.assert_array_equal(counter._low_passed(piece, lo, up, down), want)
        lo += n
    assert lo < x.shape[1]
