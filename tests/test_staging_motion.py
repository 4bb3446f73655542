"""Motion features: ActiGraph counts identical to the agcounts package (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from agcounts.extract import get_counts

from sensord.errors import StagingError
from sensord.model import AccStream
from sensord.staging.motion import (
    SUPPORTED_HZ,
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
    # 45 min at 50 Hz = 135,000 samples: more than one internal chunk (131,072)
    acc = synthetic(50, 2700, 9)
    np.testing.assert_array_equal(activity_counts(acc, 50), get_counts(acc, freq=50, epoch=1))


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
