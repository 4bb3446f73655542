"""The live stager's rolling counts (sensord.staging.live): what it keeps and refuses.

The reference is ``counts_from_stream`` over the same samples taken at once (itself
checked against the ``agcounts`` package in test_staging_motion.py).
"""

from __future__ import annotations

import numpy as np

from sensord.model import AccStream
from sensord.staging.live import LiveStager
from sensord.staging.motion import counts_from_stream

T0_NS = 1_700_000_040 * 10**9


def _walk(n: int, fs: float = 50.0, seed: int = 0) -> AccStream:
    rng = np.random.default_rng(seed)
    t = T0_NS + np.round(np.arange(n) * 1e9 / fs).astype(np.int64)
    a = np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0) + np.array([0.0, 0.0, 1.0])
    return AccStream(t, a)


def test_rolling_counts_equal_the_whole_stream_and_are_trimmed() -> None:
    acc = _walk(50 * 600)  # 10 min at 50 Hz
    stager = LiveStager(keep_s=120.0)
    for lo in range(0, len(acc), 1500):  # 30 s at a time
        stager.add_acc("h10", AccStream(acc.t_ns[lo:lo + 1500], acc.acc_g[lo:lo + 1500]))
    whole = counts_from_stream(acc)
    kept = stager.counts
    # only the last keep_s seconds before the newest bin
    assert int(kept.t_ns[-1] - kept.t_ns[0]) <= 120 * 10**9
    assert len(kept) >= 119
    idx = np.searchsorted(whole.t_ns, kept.t_ns)
    np.testing.assert_array_equal(whole.t_ns[idx], kept.t_ns)
    np.testing.assert_array_equal(whole.counts[idx], kept.counts)


def test_bad_and_repeated_samples_are_dropped_not_fatal() -> None:
    acc = _walk(50 * 60)
    a = acc.acc_g.copy()
    a[100] = np.nan  # not finite
    a[200] = [40.0, 0.0, 0.0]  # beyond any wearable's range (16 g)
    stager = LiveStager()
    stager.add_acc("h10", AccStream(acc.t_ns[:1500], a[:1500]))
    # the second piece repeats 10 samples already counted
    n_bins = stager.add_acc("h10", AccStream(acc.t_ns[1490:], a[1490:]))
    assert n_bins > 0
    assert stager.dropped == 2 + 10


def test_a_new_source_restarts_the_counts() -> None:
    stager = LiveStager()
    stager.add_acc("wrist", _walk(50 * 60, seed=1))
    assert stager.source == "wrist" and len(stager.counts) > 0
    chest = _walk(50 * 20, seed=2)
    stager.add_acc("chest", chest)
    assert stager.source == "chest"
    whole = counts_from_stream(chest)
    np.testing.assert_array_equal(stager.counts.t_ns, whole.t_ns[:len(stager.counts)])


def test_hrv_from_a_time_equals_the_whole_window_there_and_changes_nothing_else() -> None:
    from sensord.model import EPOCH_NS, BeatStream, NightStreams
    from sensord.simulate import SimConfig, simulate_night
    from sensord.staging.core import score_night

    sn = simulate_night(SimConfig(seed=5, duration_h=0.5), 0)
    start = int(sn.start_ns)
    end = start + 10 * 60 * 10**9
    keep = (sn.beat_t_ns >= start) & (sn.beat_t_ns < end)
    night = NightStreams(start, end, beats=BeatStream(sn.beat_t_ns[keep], sn.rr_ms[keep]))
    whole = score_night(night, tz="UTC")
    t_ep = whole.features["t_ns"]
    # from the middle of an epoch: that epoch starts before it, so it has no HRV
    from_ns = int(t_ep[8]) + EPOCH_NS // 2
    part = score_night(night, tz="UTC", hrv_from_ns=from_ns)
    later = t_ep >= from_ns
    assert later.sum() == 11
    for key in ("rmssd_ms", "sdnn_ms", "pnn50_pct", "lf_ms2", "hf_ms2", "lf_hf", "hrv_cover"):
        assert np.array_equal(part.features[key][later], whole.features[key][later],
                              equal_nan=True), key
        empty = 0.0 if key == "hrv_cover" else np.nan
        assert np.array_equal(part.features[key][~later], np.full((~later).sum(), empty),
                              equal_nan=True), key
    assert np.isfinite(whole.features["rmssd_ms"][later]).sum() >= 4  # something to equal
    assert np.array_equal(part.hypnogram.stages, whole.hypnogram.stages)
    assert np.array_equal(part.hypnogram.probabilities, whole.hypnogram.probabilities)


def test_walch_features_from_a_time_equal_the_whole_window_there() -> None:
    from sensord.model import EPOCH_NS, AccStream, BeatStream, HeartRateStream, NightStreams
    from sensord.simulate import SimConfig, simulate_night
    from sensord.staging.core import epoch_inputs
    from sensord.staging.motion import counts_from_stream

    sn = simulate_night(SimConfig(seed=6, duration_h=0.5, acc_rate_hz=50.0), 0)
    start = int(sn.start_ns)
    end = start + 10 * 60 * 10**9
    keep = (sn.beat_t_ns >= start) & (sn.beat_t_ns < end)
    acc_keep = (sn.acc_t_ns >= start) & (sn.acc_t_ns < end)
    night = NightStreams(
        start, end, hr=HeartRateStream(sn.beat_t_ns[keep], 60000.0 / sn.rr_ms[keep]),
        beats=BeatStream(sn.beat_t_ns[keep], sn.rr_ms[keep]),
        counts=counts_from_stream(AccStream(sn.acc_t_ns[acc_keep], sn.acc_g[acc_keep])))
    whole = epoch_inputs(night)
    t_ep = whole.features["t_ns"]
    for from_ns in (int(t_ep[-1]), int(t_ep[8]) + EPOCH_NS // 2, start - EPOCH_NS):
        part = epoch_inputs(night, features_from_ns=from_ns)
        later = t_ep >= from_ns
        for key, values in whole.features.items():
            if key in ("count_feature", "hr_feature"):
                assert np.isfinite(values[later]).any(), key  # something to compare
                assert np.isnan(part.features[key][~later]).all(), key
                values, got = values[later], part.features[key][later]
            else:
                got = part.features[key]
            assert np.array_equal(got, values, equal_nan=True), (key, from_ns)
