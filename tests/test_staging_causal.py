"""The live stager's causal night so far (sensord.staging.live.LiveStager.stage).

References are the whole-array paths of the final scorer, which the live stager does not
call: ``features.design_matrix`` (its last row), ``stager.emissions`` over whole design
matrices, and ``hmm.forward_backward`` (its last posterior is the filtered distribution).
"""

from __future__ import annotations

import numpy as np
import pytest

from sensord.model import (
    EPOCH_NS,
    AccStream,
    BeatStream,
    CountStream,
    HeartRateStream,
    NightStreams,
)
from sensord.simulate import SimConfig, simulate_night
from sensord.staging import features, hmm
from sensord.staging.core import default_model, epoch_inputs
from sensord.staging.live import MAX_GAP_S, LiveStager
from sensord.staging.motion import counts_from_stream
from sensord.staging.stager import emissions

WINDOW_NS = 600 * 10**9


def _series(rng: np.random.Generator, n: int, *, missing: float) -> np.ndarray:
    x = rng.normal(0.0, 1.0, n)
    x[rng.random(n) < missing] = np.nan
    return x


@pytest.mark.parametrize("n", [1, 2, 7, 40, 80, 81, 82, 161, 300])
def test_design_row_is_the_last_row_of_the_design_matrix(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(20):
        count = np.log1p(np.abs(_series(rng, n, missing=0.2)))
        hr = _series(rng, n, missing=0.2)
        if trial % 4 == 1:
            count[-min(n, 12):] = np.nan  # the newest epochs without motion
        if trial % 4 == 2:
            hr[:] = np.nan
        if trial % 4 == 3:
            count[rng.random(n) < 0.5] = 0.0  # ties in the ranks, zero variance windows
        for c, h in ((count, hr), (None, hr), (count, None)):
            want = features.design_matrix(c, h, n)[-1]
            got = features.design_row(c, h)
            assert got.shape == want.shape
            assert np.array_equal(np.isnan(got), np.isnan(want)), (trial, n)
            # a window's sum differs in rounding; a standard deviation of a window whose
            # values are all equal is the square root of that rounding (about 1e-8)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=2e-7)


def test_design_row_needs_a_feature_and_an_epoch() -> None:
    with pytest.raises(ValueError, match="count or the heart-rate"):
        features.design_row(None, None)
    with pytest.raises(ValueError, match="at least one epoch"):
        features.design_row(np.zeros(0), None)


def test_forward_steps_give_the_last_posterior_of_forward_backward() -> None:
    mdl = default_model()
    rng = np.random.default_rng(4)
    e = rng.gamma(0.5, 1.0, (200, 4)) + 1e-6
    e[rng.random(200) < 0.1] = 1.0  # unscored epochs: flat
    alpha = None
    for t in range(e.shape[0]):
        alpha = hmm.forward_step(alpha, e[t], mdl.transition, mdl.initial)
        want = hmm.forward_backward(e[: t + 1], mdl.transition, mdl.initial)[-1]
        np.testing.assert_allclose(alpha, want, rtol=1e-9, atol=1e-12)


def _night(seed: int, hours: float) -> tuple[NightStreams, CountStream]:
    sn = simulate_night(SimConfig(seed=seed, duration_h=hours, acc_rate_hz=50.0), 0)
    sec = sn.beat_t_ns // 10**9 * 10**9  # a strap's 1-Hz heart rate: one beat a second
    _, first = np.unique(sec, return_index=True)
    hr = HeartRateStream(sn.beat_t_ns[first], 60000.0 / sn.rr_ms[first])
    counts = counts_from_stream(AccStream(sn.acc_t_ns, sn.acc_g))
    night = NightStreams(int(sn.start_ns), int(sn.end_ns), hr=hr,
                         beats=BeatStream(sn.beat_t_ns, sn.rr_ms))
    return night, counts


def _window(night: NightStreams, end: int) -> NightStreams:
    lo = end - WINDOW_NS

    def cut(stream, field):  # type: ignore[no-untyped-def]
        keep = (stream.t_ns >= lo) & (stream.t_ns < end)
        return type(stream)(stream.t_ns[keep], getattr(stream, field)[keep])

    assert night.hr is not None and night.beats is not None
    return NightStreams(lo, end, hr=cut(night.hr, "hr_bpm"), beats=cut(night.beats, "rr_ms"))


def test_each_epoch_is_staged_as_the_last_epoch_of_its_night_so_far() -> None:
    """Every tick stages its epoch from the night's inputs as they were when each epoch
    was staged; the reference rebuilds every design matrix whole and runs
    forward-backward over the emissions of every epoch so far."""
    night, counts = _night(seed=11, hours=1.5)
    mdl = default_model()
    stager = LiveStager(keep_s=10**6)
    stager.counts = counts
    first_end = (night.start_ns // EPOCH_NS + 3) * EPOCH_NS
    ends = range(first_end, night.end_ns - EPOCH_NS, EPOCH_NS)
    frozen: list[tuple[float, float, bool, bool]] = []
    emis: list[np.ndarray] = []
    n_scored = 0
    for end in ends:
        window = _window(night, end)
        got = stager.stage(window, lo_ns=end - EPOCH_NS, end_ns=end, night_key="n1",
                           tz="Europe/Zurich")
        assert got.t_ns.tolist() == [end - EPOCH_NS]
        ref = epoch_inputs(NightStreams(window.start_ns, window.end_ns, hr=window.hr,
                                        beats=window.beats, counts=counts))
        i = int(np.flatnonzero(ref.features["t_ns"] == end - EPOCH_NS)[0])
        frozen.append((ref.features["count_feature"][i], ref.features["hr_feature"][i],
                       bool(ref.has_hr[i]), bool(ref.has_motion[i])))
        for key in ("hr_bpm", "counts", "count_feature", "hr_feature", "rr_flags"):
            assert np.array_equal(got.features[key], ref.features[key][i:i + 1],
                                  equal_nan=True), key
        arr = np.array(frozen, dtype=np.float64)
        count_n, hr_n = features.normalise_night(arr[:, 0], arr[:, 1])
        n = arr.shape[0]
        has_hr, has_motion = arr[:, 2] > 0, arr[:, 3] > 0
        design = {"hr+motion": features.design_matrix(count_n, hr_n, n),
                  "hr": features.design_matrix(None, hr_n, n),
                  "motion": features.design_matrix(count_n, None, n)}
        usable = {"hr+motion": has_hr & has_motion, "hr": has_hr, "motion": has_motion}
        e_all, codes = emissions(mdl, design, usable)
        emis.append(e_all[-1])
        post = hmm.forward_backward(np.array(emis), mdl.transition, mdl.initial)[-1]
        assert got.features["feature_set"][0] == codes[-1]
        if codes[-1] > 0:
            n_scored += 1
            np.testing.assert_allclose(got.probabilities[0], post, rtol=1e-6, atol=1e-9)
            if np.sort(post)[-1] - np.sort(post)[-2] > 1e-6:  # no near tie
                assert got.stages[0] == np.argmax(post)
        else:
            assert got.stages[0] == -1 and np.isnan(got.probabilities[0]).all()
    assert n_scored > 0.8 * len(ends)
    assert stager.night is not None and stager.night.n == len(ends)


def test_skipped_epochs_enter_unscored_and_a_new_night_starts_over() -> None:
    night, counts = _night(seed=12, hours=1.0)
    mdl = default_model()
    stager = LiveStager(keep_s=10**6)
    stager.counts = counts
    end = (night.start_ns // EPOCH_NS + 20) * EPOCH_NS
    stager.stage(_window(night, end), lo_ns=end - EPOCH_NS, end_ns=end, night_key="a",
                 tz="UTC")
    assert stager.night is not None
    alpha0 = stager.night.alpha
    assert alpha0 is not None
    later = end + 5 * EPOCH_NS  # four epochs without a job (e.g. a restart of the radio)
    got = stager.stage(_window(night, later), lo_ns=later - EPOCH_NS, end_ns=later,
                       night_key="a", tz="UTC")
    assert got.t_ns.tolist() == [later - EPOCH_NS]
    assert stager.night.n == 6 and np.isnan(stager.night.count_feature[1:5]).all()
    # the chain crossed the four epochs with flat emissions
    flat = hmm.forward_backward(np.vstack((alpha0 / mdl.initial, np.ones((4, 4)))),
                                mdl.transition, mdl.initial)[-1]
    alpha = alpha0
    for _ in range(4):
        alpha = hmm.forward_step(alpha, np.ones(4), mdl.transition, mdl.initial)
    np.testing.assert_allclose(alpha, flat, rtol=1e-9)
    # an epoch already staged is not staged again
    again = stager.stage(_window(night, later), lo_ns=later - 3 * EPOCH_NS, end_ns=later,
                         night_key="a", tz="UTC")
    assert again.t_ns.size == 0
    # a new night (another log) starts over, as does a gap longer than MAX_GAP_S
    stager.stage(_window(night, later + EPOCH_NS), lo_ns=later, end_ns=later + EPOCH_NS,
                 night_key="b", tz="UTC")
    assert stager.night.n == 1 and stager.night.key == "b"
    assert stager.night.start_ns == later
    far = later + (MAX_GAP_S // 30 + 5) * EPOCH_NS
    empty = stager.stage(_window(night, far), lo_ns=far - EPOCH_NS, end_ns=far,
                         night_key="b", tz="UTC")  # past the simulated data: unscored
    assert empty.stages.tolist() == [-1]
    assert stager.night.n == 1 and stager.night.start_ns == far - EPOCH_NS
