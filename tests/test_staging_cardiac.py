"""RR artefact handling and HRV against plain-Python references and real MMASH beats."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from sensord.model import BeatStream
from sensord.staging import cardiac
from sensord.staging.cardiac import (
    RR_DROPOUT,
    RR_ECTOPIC,
    RR_MISSED,
    _periodogram,
    correct_rr,
    hrv_per_epoch,
)
from sensord.staging.epochs import epoch_grid

S = 10**9
T0 = 1_800_000_000 * S  # a multiple of 30 s


def beats_from_rr(rr_ms: np.ndarray, t0: int = T0) -> BeatStream:
    t = t0 + np.round(np.cumsum(rr_ms) * 1e6).astype(np.int64)
    return BeatStream(t, rr_ms.astype(float))


def test_artefacts_are_flagged_and_missed_beats_split() -> None:
    rr = np.full(60, 1000.0)
    rr[10] = 2000.0  # a missed beat: two intervals merged
    rr[20] = 600.0  # an ectopic (premature) beat
    rr[30] = 27800.0  # a dropout like MMASH's
    nn = correct_rr(beats_from_rr(rr))
    assert nn.flags[10] & RR_MISSED and nn.flags[20] & RR_ECTOPIC and nn.flags[30] & RR_DROPOUT
    assert np.count_nonzero(nn.flags) == 3
    # the missed beat became two accepted 1000-ms intervals; one extra beat in total
    assert nn.t_ns.size == 61 and nn.ok.sum() == 61 - 2
    np.testing.assert_allclose(nn.nn_ms[10:12], [1000.0, 1000.0])
    # beat 10 came at 12 s after 10 s: the inserted beat sits at 11 s
    assert nn.t_ns[10] == T0 + 11 * S and nn.t_ns[11] == T0 + 12 * S


def rmssd_reference(rr: list[float], ok: list[bool]) -> float:
    d = [rr[i] - rr[i - 1] for i in range(1, len(rr)) if ok[i] and ok[i - 1]]
    return math.sqrt(sum(x * x for x in d) / len(d))


def test_time_domain_hrv_matches_a_plain_reference() -> None:
    rng = np.random.default_rng(3)
    rr = 900 + 60 * np.sin(np.arange(700) * 2 * np.pi / 4.5) + rng.normal(0, 20, 700)
    beats = beats_from_rr(rr)
    grid = epoch_grid(T0, int(beats.t_ns[-1]))
    nn = correct_rr(beats)
    assert nn.ok.all()
    hrv = hrv_per_epoch(grid, nn)
    k = grid.n // 2  # a window well inside the recording
    mid = grid.t_ns[k] + 15 * S
    inside = (beats.t_ns >= mid - 150 * S) & (beats.t_ns < mid + 150 * S)
    sel = list(rr[inside])
    assert math.isclose(hrv["rmssd_ms"][k], rmssd_reference(sel, [True] * len(sel)), rel_tol=1e-9)
    assert math.isclose(hrv["sdnn_ms"][k], float(np.std(sel)), rel_tol=1e-9)
    d = np.abs(np.diff(sel))
    assert math.isclose(hrv["pnn50_pct"][k], 100 * float(np.mean(d > 50)), rel_tol=1e-9)
    # edges: the 5-min window is not covered -> NaN, never a number from half a window
    assert np.isnan(hrv["rmssd_ms"][0]) and hrv["hrv_cover"][0] < 0.8


def test_spectral_hrv_finds_the_modulation_band() -> None:
    t = np.arange(0, 1800, 1.0)
    for f_mod, band in ((0.25, "hf_ms2"), (0.08, "lf_ms2")):
        rr = 1000 + 40 * np.sin(2 * np.pi * f_mod * np.cumsum(np.full(t.size, 1.0)))
        nn = correct_rr(beats_from_rr(rr))
        grid = epoch_grid(T0, int(nn.t_ns[-1]))
        hrv = hrv_per_epoch(grid, nn)
        k = grid.n // 2
        other = "lf_ms2" if band == "hf_ms2" else "hf_ms2"
        assert hrv[band][k] > 10 * hrv[other][k]
    x = np.random.default_rng(0).normal(size=(4, 1200)) + np.arange(1200) * 0.01
    f_ref, p_ref = signal.periodogram(x, fs=4.0, window="hann", detrend="linear", axis=1)
    f, p = _periodogram(x)
    np.testing.assert_allclose(f, f_ref)
    np.testing.assert_allclose(p, p_ref, rtol=1e-9, atol=1e-12)


def test_real_mmash_beats_with_the_27_8_s_dropout() -> None:
    with gzip.open("../shared/data/mmash/user_1/RR.csv.gz", "rt") as fh:
        next(fh)
        ibi = np.array([float(line.split(",")[1]) for line in fh])
    rr = ibi * 1000.0
    assert rr.max() > 27000  # the dropout documented in the data README
    nn = correct_rr(beats_from_rr(rr))
    assert nn.flags[np.argmax(rr)] & RR_DROPOUT
    grid = epoch_grid(T0, int(nn.t_ns[-1]))
    hrv = hrv_per_epoch(grid, nn)
    rm = hrv["rmssd_ms"][np.isfinite(hrv["rmssd_ms"])]
    assert rm.size > 0.5 * grid.n
    assert 5 < np.median(rm) < 200  # physiological RMSSD, not artefact-inflated


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(200, 2000, allow_nan=False), st.just(math.nan)),
                max_size=80))
def test_running_nanmedian_equals_the_median_of_each_window(values: list[float]) -> None:
    import statistics

    got = cardiac._nanmedian_filter(np.asarray(values, dtype=np.float64), 11)
    for i in range(len(values)):
        window = [v for v in values[max(0, i - 5): i + 6] if not math.isnan(v)]
        if window:
            assert math.isclose(got[i], statistics.median(window), rel_tol=1e-12)
        else:
            assert math.isnan(got[i])


def test_band_powers_are_the_same_whatever_block_of_epochs_they_are_computed_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spectra are computed a block of epochs at a time (memory): every epoch must get,
    bit for bit, what it gets when the whole night's spectra are computed at once."""
    rng = np.random.default_rng(5)
    n_beats = 9000  # about 2.5 h: more epochs than one block holds
    t = np.arange(n_beats, dtype=float)
    rr = 950 + 35 * np.sin(2 * np.pi * 0.25 * t) + 20 * np.sin(2 * np.pi * 0.09 * t) \
        + rng.normal(0, 8, n_beats)
    nn = correct_rr(beats_from_rr(rr))
    grid = epoch_grid(T0, int(nn.t_ns[-1]))
    assert grid.n > 2 * cardiac._SPECTRA_BLOCK
    blocked = hrv_per_epoch(grid, nn)
    for block in (grid.n, 2, 3, 7, 1):
        monkeypatch.setattr(cardiac, "_SPECTRA_BLOCK", block)
        other = hrv_per_epoch(grid, nn)
        for key in ("lf_ms2", "hf_ms2", "lf_hf"):
            assert blocked[key].tobytes() == other[key].tobytes(), (key, block)
    hf, lf = blocked["hf_ms2"], blocked["lf_ms2"]
    assert np.isfinite(hf).sum() > 0.9 * grid.n
    assert np.nanmedian(hf) > np.nanmedian(lf)  # the 0.25-Hz modulation is the larger
