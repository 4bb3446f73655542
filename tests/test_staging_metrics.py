"""Night metrics and the Hypnogram type against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sensord.errors import StagingError
from sensord.staging.hypnogram import Hypnogram
from sensord.staging.metrics import night_metrics

W, L, D, R, U = 0, 1, 2, 3, -1
T0 = 1_700_000_010 * 10**9  # 2023-11-14T22:13:30Z, a multiple of 30 s


def hyp(stages: list[int]) -> Hypnogram:
    n = len(stages)
    probs = np.full((n, 4), np.nan)
    for i, s in enumerate(stages):
        if s >= 0:
            probs[i] = np.eye(4)[s]
    return Hypnogram(T0, np.array(stages, dtype=np.int8), probs, "hand")


def test_every_metric_on_a_small_hypnogram() -> None:
    # idx:     0  1  2  3  4  5  6  7  8  9 10 11 12 13
    stages = [W, W, L, L, W, L, D, D, R, W, W, L, R, W]
    hr = np.array([70, 70, 60, 58, 72, np.nan, 52, 50, 62, 75, 75, 56, 64, 70], dtype=float)
    rm = np.array([30, 30, 40, 42, 20, 44, 50, 55, 35, 20, 20, 41, 33, 20], dtype=float)
    m = night_metrics(hyp(stages), hr_bpm=hr, rmssd_ms=rm)
    # 14 epochs of 0.5 min; sleep epochs 2,3,5,6,7,8,11,12 -> 8
    assert m["tib_min"] == 7.0
    assert m["tst_min"] == 4.0
    assert m["se_pct"] == round(100 * 4 / 7, 2)
    assert m["sol_min"] == 1.0  # onset at epoch 2
    assert m["spt_min"] == 5.5  # epochs 2..12
    assert m["waso_min"] == 1.5  # epochs 4, 9, 10
    assert m["awakenings"] == 2  # runs [4] and [9, 10]
    assert m["awakening_mean_min"] == 0.75
    assert m["rem_latency_min"] == 3.0  # first REM epoch 8, 6 epochs after onset
    assert (m["wake_min"], m["light_min"], m["deep_min"], m["rem_min"]) == (3.0, 2.0, 1.0, 1.0)
    assert m["wake_pct"] == round(100 * 3 / 7, 2)
    assert (m["light_pct"], m["deep_pct"], m["rem_pct"]) == (50.0, 25.0, 25.0)
    # shifts to wake from sleep inside the SPT: 3->4, 8->9; none deep/REM -> light
    assert m["sfi_per_h"] == 30.0  # 2 shifts / (4 min / 60)
    assert m["hr_min_bpm"] == 50.0
    assert m["hr_mean_bpm"] == round((60 + 58 + 52 + 50 + 62 + 56 + 64) / 7, 2)
    assert m["rmssd_ms"] == 41.5  # median of 40,42,44,50,55,35,41,33
    assert m["coverage"] == 1.0


def test_unscored_epochs_are_neither_sleep_nor_wake() -> None:
    m = night_metrics(hyp([U, W, L, U, L, D, L, R, L, W, U]))
    assert m["tib_min"] == 5.5
    assert m["tst_min"] == 3.0
    assert m["sol_min"] == 1.0  # onset epoch 2 (the unscored epoch 0 counts as in bed)
    assert m["waso_min"] == 0.0
    assert m["awakenings"] == 0
    assert m["rem_latency_min"] == 2.5
    assert m["sfi_per_h"] == 40.0  # deep->light (5->6) and REM->light (7->8): 2 / 0.05 h
    assert m["coverage"] == round(8 / 11, 4)


def test_night_without_sleep_and_empty_night() -> None:
    m = night_metrics(hyp([W, W, W]))
    assert m["tst_min"] == 0.0 and m["sol_min"] is None and m["rem_latency_min"] is None
    assert m["se_pct"] == 0.0 and m["light_pct"] is None
    e = night_metrics(hyp([]))
    assert e["tib_min"] == 0.0 and e["coverage"] == 0.0 and e["se_pct"] is None


def test_deep_to_light_shift_counts_in_fragmentation() -> None:
    m = night_metrics(hyp([L, D, L, L, W, L]))
    # shifts: D->L (1->2), L->W (3->4) = 2 in 5 sleep epochs (2.5 min)
    assert m["sfi_per_h"] == 48.0
    assert m["awakenings"] == 1 and m["waso_min"] == 0.5


def test_hypnogram_validates_its_input() -> None:
    with pytest.raises(StagingError, match="aligned"):
        Hypnogram(T0 + 1, np.zeros(2, dtype=np.int8), np.zeros((2, 4)), "x")
    with pytest.raises(StagingError, match="probabilities"):
        Hypnogram(T0, np.zeros(2, dtype=np.int8), np.zeros((3, 4)), "x")
    with pytest.raises(StagingError, match="codes"):
        Hypnogram(T0, np.array([5], dtype=np.int8), np.zeros((1, 4)), "x")
    with pytest.raises(StagingError, match="one value per epoch"):
        night_metrics(hyp([W, L]), hr_bpm=np.zeros(3))
    h = hyp([W, L, U])
    assert h.end_ns == T0 + 90 * 10**9
    assert h.stage_names() == ["wake", "light", "unscored"]
    assert list(h.t_ns - T0) == [0, 30 * 10**9, 60 * 10**9]
