"""score_night end to end: simulated nights against their ground truth, and bad input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sensord.errors import ConfigError, StagingError
from sensord.model import AccStream, BeatStream, CountStream, HeartRateStream, NightStreams
from sensord.simulate import SimConfig, simulate_night
from sensord.staging import load_model, score_night
from sensord.staging.validate import stage_report

S = 10**9
FOUR = np.array([0, 1, 1, 2, 3])  # simulator W N1 N2 N3 R -> wake light deep REM


@pytest.fixture(scope="module")
def night() -> tuple[object, NightStreams]:
    sn = simulate_night(SimConfig(seed=11, duration_h=4.0), 0)
    streams = NightStreams(
        sn.start_ns, sn.end_ns,
        beats=BeatStream(sn.beat_t_ns, sn.rr_ms),
        acc=AccStream(sn.acc_t_ns, sn.acc_g),
    )
    return sn, streams


@pytest.fixture(scope="module")
def scored(night: tuple[object, NightStreams]):  # type: ignore[no-untyped-def]
    return score_night(night[1], tz="Europe/Zurich")


def test_simulated_night_stages_agree_with_ground_truth(night, scored) -> None:  # type: ignore[no-untyped-def]
    sn, _ = night
    truth = FOUR[sn.stage.astype(np.int64)]
    assert len(scored.hypnogram) == truth.size
    rep = stage_report(truth, scored.hypnogram.stages.astype(np.int64))
    assert rep["sleep_wake"]["kappa"] >= 0.4
    assert rep["four_class"]["kappa"] >= 0.2
    s = scored.summary
    assert s["coverage"] == 1.0 and s["feature_sets"]["hr+motion"] == truth.size
    assert s["scorer"] == load_model().version == scored.hypnogram.scorer
    probs = scored.hypnogram.probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert 40 <= s["hr_mean_bpm"] <= 90 and s["rmssd_ms"] > 0


def test_duplicated_and_shuffled_samples_give_the_same_night(night, scored) -> None:  # type: ignore[no-untyped-def]
    _, st = night
    rng = np.random.default_rng(0)
    order = rng.permutation(st.beats.t_ns.size)
    dup = np.concatenate((order, order[:500]))
    acc_order = rng.permutation(st.acc.t_ns.size)
    messy = NightStreams(
        st.start_ns, st.end_ns,
        beats=BeatStream(st.beats.t_ns[dup], st.beats.rr_ms[dup]),
        acc=AccStream(st.acc.t_ns[acc_order], st.acc.acc_g[acc_order]),
    )
    again = score_night(messy, tz="Europe/Zurich")
    np.testing.assert_array_equal(again.hypnogram.stages, scored.hypnogram.stages)
    assert again.summary["data_quality"]["rr_dropped"] == 500


def test_nan_inf_gaps_and_off_body_give_unscored_epochs(night, scored) -> None:  # type: ignore[no-untyped-def]
    _, st = night
    rr = st.beats.rr_ms.copy()
    rr[::50] = np.nan
    rr[1::97] = np.inf
    acc = st.acc.acc_g.copy()
    acc[::1000] = np.nan
    gap = (st.start_ns + 3600 * S, st.start_ns + 5400 * S)  # 30 min without any data
    keep_b = (st.beats.t_ns < gap[0]) | (st.beats.t_ns >= gap[1])
    keep_a = (st.acc.t_ns < gap[0]) | (st.acc.t_ns >= gap[1])
    off = np.array([st.start_ns + 7200 * S + k * 30 * S for k in range(10)], dtype=np.int64)
    bad = NightStreams(
        st.start_ns, st.end_ns,
        beats=BeatStream(st.beats.t_ns[keep_b], rr[keep_b]),
        acc=AccStream(st.acc.t_ns[keep_a], acc[keep_a]),
        off_body_t_ns=off,
    )
    res = score_night(bad, tz="Europe/Zurich")
    stages = res.hypnogram.stages
    t = res.hypnogram.t_ns
    in_gap = (t >= gap[0]) & (t < gap[1])
    assert (stages[in_gap] == -1).all()
    assert (stages[np.searchsorted(t, off)] == -1).all() and res.summary["off_body_epochs"] == 10
    assert np.isnan(res.hypnogram.probabilities[in_gap]).all()
    expected_cov = 1 - (in_gap.sum() + 10) / t.size
    assert res.summary["coverage"] == pytest.approx(expected_cov, abs=0.01)
    scored_ok = stages >= 0
    agree = np.mean(stages[scored_ok] == scored.hypnogram.stages[scored_ok])
    assert agree > 0.8  # the rest of the night is still staged much the same


def test_single_stream_nights_use_their_feature_set(night) -> None:  # type: ignore[no-untyped-def]
    _, st = night
    hr_only = score_night(NightStreams(st.start_ns, st.end_ns, beats=st.beats), tz="UTC")
    assert hr_only.summary["feature_sets"]["hr"] == len(hr_only.hypnogram)
    mot_only = score_night(NightStreams(st.start_ns, st.end_ns, acc=st.acc), tz="UTC")
    assert mot_only.summary["feature_sets"]["motion"] == len(mot_only.hypnogram)
    assert np.isnan(mot_only.features["hr_bpm"]).all() and mot_only.summary["hr_min_bpm"] is None
    # heart rate from the HR characteristic (1 Hz), no RR
    sec = np.arange(st.start_ns, st.end_ns, S)
    hr = np.interp(sec, st.beats.t_ns, 60000.0 / st.beats.rr_ms)
    via_hr = score_night(
        NightStreams(st.start_ns, st.end_ns, hr=HeartRateStream(sec, hr)), tz="UTC"
    )
    assert via_hr.summary["feature_sets"]["hr"] == len(via_hr.hypnogram)
    # device counts straight in (1-s bins, like MMASH's ActiGraph export)
    counts = CountStream(sec, np.where(np.arange(sec.size) % 600 < 20, 50.0, 0.0), 1.0)
    via_counts = score_night(NightStreams(st.start_ns, st.end_ns, counts=counts), tz="UTC")
    assert via_counts.summary["feature_sets"]["motion"] == len(via_counts.hypnogram)


def test_empty_and_degenerate_nights_are_defined() -> None:
    t0 = 1_800_000_000 * S
    empty = score_night(NightStreams(t0, t0 + 3600 * S), tz="UTC")
    assert (empty.hypnogram.stages == -1).all() and empty.summary["coverage"] == 0.0
    assert empty.summary["tst_min"] == 0.0 and empty.summary["sol_min"] is None
    zero = score_night(NightStreams(t0, t0), tz="UTC")
    assert len(zero.hypnogram) == 0 and zero.summary["epochs"] == 0
    few = NightStreams(t0, t0 + 600 * S, beats=BeatStream(np.array([t0 + S]), np.array([800.0])))
    assert (score_night(few, tz="UTC").hypnogram.stages == -1).all()
    allnan = NightStreams(
        t0, t0 + 600 * S,
        hr=HeartRateStream(t0 + np.arange(600) * S, np.full(600, np.nan)),
        acc=AccStream(t0 + np.arange(600) * S // 50, np.full((600, 3), np.inf)),
    )
    res = score_night(allnan, tz="UTC")
    assert (res.hypnogram.stages == -1).all()
    assert res.summary["data_quality"]["hr_dropped"] == 600
    with pytest.raises(StagingError, match=r"acc_g"):
        score_night(NightStreams(t0, t0 + 60 * S, acc=AccStream(
            t0 + np.arange(10), np.zeros((10, 2)))), tz="UTC")
    with pytest.raises(ConfigError, match="Nowhere/City"):
        score_night(NightStreams(t0, t0 + 60 * S), tz="Nowhere/City")


def test_a_night_across_the_dst_change() -> None:
    # Europe/Berlin springs forward 2026-03-29 02:00 -> 03:00: 23:00 CET to 07:00 CEST = 7 h
    start = int(dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC).timestamp()) * S
    sn = simulate_night(SimConfig(seed=5, duration_h=7.0), 0, start_ns=start)
    res = score_night(
        NightStreams(sn.start_ns, sn.end_ns, beats=BeatStream(sn.beat_t_ns, sn.rr_ms),
                     acc=AccStream(sn.acc_t_ns, sn.acc_g)),
        tz="Europe/Berlin",
    )
    s = res.summary
    assert s["night"] == "2026-03-28"
    assert s["start_local"] == "2026-03-28T23:00:00+01:00"
    assert s["end_local"] == "2026-03-29T07:00:00+02:00"
    assert s["tib_min"] == 7 * 60 and s["coverage"] == 1.0
