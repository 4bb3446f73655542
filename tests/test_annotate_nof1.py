"""N-of-1 effect sizes checked against hand computation and exact enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sensord import nof1


def test_difference_of_means_by_hand() -> None:
    e = nof1.mean_difference([7, 8, 9, 10], [1, 2, 3, 4], seed=1)
    # (7+8+9+10)/4 = 8.5, (1+2+3+4)/4 = 2.5
    assert (e.mean_exposed, e.mean_unexposed, e.diff) == (8.5, 2.5, 6.0)
    assert (e.n_exposed, e.n_unexposed, e.enough) == (4, 4, True)
    # Every resampled difference lies between 7-4 = 3 and 10-1 = 9.
    assert 3 <= e.ci_low < 6 < e.ci_high <= 9
    assert e.describe("min").startswith("+6.0 min (95% CI ")
    assert e.describe("min").endswith("; 4 vs 4 nights)")


def test_constant_groups_have_a_point_interval() -> None:
    e = nof1.mean_difference([5, 5, 5, 5], [3, 3, 3, 3, 3])
    assert (e.diff, e.ci_low, e.ci_high) == (2.0, 2.0, 2.0)


def test_nan_nights_are_dropped_and_few_nights_are_flagged() -> None:
    e = nof1.mean_difference([1, np.nan, 2, 3, 4], [0, 0, 0, 0])
    assert e.n_exposed == 4 and e.diff == 2.5
    few = nof1.mean_difference([1, 2, 3], list(range(20)))
    assert not few.enough and np.isnan(few.diff) and np.isnan(few.ci_low)
    assert few.mean_exposed == 2.0
    assert few.describe() == "not enough nights (3 vs 20 nights; need 4 in each)"


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution() -> None:
    x = [0.0, 1.0, 2.0, 6.0]
    y = [0.0, 0.0, 1.0, 3.0]
    # Exact bootstrap distribution by enumerating all 4**4 resamples of each group.
    mx = [sum(c) / 4 for c in itertools.product(x, repeat=4)]
    my = [sum(c) / 4 for c in itertools.product(y, repeat=4)]
    diffs = np.subtract.outer(np.array(mx), np.array(my)).ravel()
    exact_lo, exact_hi = np.quantile(diffs, [0.025, 0.975])
    e = nof1.mean_difference(x, y, n_boot=40_000, seed=3)
    assert e.diff == pytest.approx(9 / 4 - 1)
    assert e.ci_low == pytest.approx(exact_lo, abs=0.25)
    assert e.ci_high == pytest.approx(exact_hi, abs=0.25)


def test_seeded_and_reproducible() -> None:
    a = nof1.mean_difference([1, 4, 2, 8, 5], [3, 3, 1, 0, 2, 2], seed=7)
    b = nof1.mean_difference([1, 4, 2, 8, 5], [3, 3, 1, 0, 2, 2], seed=7)
    assert a == b


def test_interval_covers_a_known_effect_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2026)
    true_effect = -20.0
    hits = 0
    trials = 200
    for i in range(trials):
        rem = rng.normal(90, 12, size=30)
        exposed = np.zeros(30, dtype=bool)
        exposed[rng.choice(30, size=10, replace=False)] = True
        rem[exposed] += true_effect
        e = nof1.mean_difference(rem[exposed], rem[~exposed], n_boot=1000, seed=i)
        hits += e.ci_low <= true_effect <= e.ci_high
    assert 0.85 <= hits / trials <= 0.99


def test_slope_by_hand() -> None:
    x = [1, 2, 3, 4, 5, 6, 7, 8]
    y = [2, 4, 5, 4, 5, 7, 8, 9]
    s = nof1.ols_slope(x, y)
    # Sxy = 12.25+3.75+0.75+0.75-0.25+2.25+6.25+12.25 = 38, Sxx = 42 (means 4.5, 5.5)
    assert s.slope == pytest.approx(38 / 42)
    assert s.ci_low < s.slope < s.ci_high
    exact = nof1.ols_slope(list(range(8)), [2 * v + 1 for v in range(8)])
    assert (exact.slope, exact.ci_low, exact.ci_high) == pytest.approx((2.0, 2.0, 2.0))
    flat = nof1.ols_slope([3] * 10, list(range(10)))
    assert not flat.enough


def test_bands() -> None:
    assert [nof1.pain_band(v) for v in (0, 4, 5, 6, 7, 10)] == [
        "0-4 none/mild",
        "0-4 none/mild",
        "5-6 moderate",
        "5-6 moderate",
        "7-10 severe",
        "7-10 severe",
    ]
    assert nof1.pain_band(float("nan")) == ""
    assert nof1.median_split([1, 3, 2, 10]) == 2.5


def test_person_analysis_grouping_by_hand() -> None:
    import datetime as dt

    from sensord import annotate as an

    tz = "UTC"
    now = int(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()) * 10**9
    rem = [90, 60, 80, 65, 95, 100, 70, 85, 88, 92]
    labels = [f"2026-11-{d:02d}" for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11)]  # gap before the 11th
    nights = [{"night": n, "rem_min": float(r)} for n, r in zip(labels, rem, strict=True)]
    # kratom on the 2nd (2 g), 4th (4 g), 7th (6 g) and 9th (8 g)
    notes = [
        an.substance("kratom", dose=d, unit="g", at=f"2026-11-{day:02d} 21:00", now_ns=now, tz=tz)
        for day, d in ((2, 2), (4, 4), (7, 6), (9, 8))
    ]
    pains = {1: 2, 2: 5, 3: 8, 4: 3, 5: 7, 6: 6, 7: 1, 8: 9}
    notes += [
        an.pain(p, "bedtime", at=f"2026-11-{day:02d} 22:30", now_ns=now, tz=tz)
        for day, p in pains.items()
    ]
    notes.append(an.pain(0, "morning", at="2026-11-02 08:00", now_ns=now, tz=tz))  # not bedtime
    a = nof1.analyse_person(nights, notes, n_boot=200, min_nights=1)
    same = next(c for c in a.same_night if c.metric.key == "rem_min").effect
    # exposed: 60, 65, 70, 88 -> 70.75; others: 90, 80, 95, 100, 85, 92 -> 90.333...
    assert (same.n_exposed, same.n_unexposed) == (4, 6)
    assert same.mean_exposed == pytest.approx(70.75)
    assert same.mean_unexposed == pytest.approx(542 / 6)
    nxt = next(c for c in a.next_night if c.metric.key == "rem_min").effect
    # after a kratom night and without it: 3rd (80), 5th (95), 8th (85); the 11th follows a
    # gap. Neither: 1st (90), 6th (100), 11th (92).
    assert (nxt.mean_exposed, nxt.mean_unexposed) == (pytest.approx(260 / 3), pytest.approx(94))
    bands = [c for c in a.dose_bands if c.metric.key == "rem_min"]
    # median dose 5 g: low = 2, 4 g nights (60, 65); high = 6, 8 g nights (70, 88)
    assert [c.contrast for c in bands] == ["kratom <= 5 g vs none", "kratom > 5 g vs none"]
    assert [c.effect.mean_exposed for c in bands] == [62.5, 79.0]
    pain = {c.contrast: c.effect for c in a.pain_bands if c.metric.key == "rem_min"}
    # bands: 0-4 -> 1st (90), 4th (65), 7th (70); 5-6 -> 2nd (60), 6th (100); 7-10 -> 3rd, 5th, 8th
    mod = pain["pain 5-6 moderate vs 0-4 none/mild"]
    assert (mod.mean_exposed, mod.mean_unexposed) == (80.0, 75.0)
    sev = pain["pain 7-10 severe vs 0-4 none/mild"]
    assert sev.mean_exposed == pytest.approx((80 + 95 + 85) / 3)
    row2 = a.table[1]
    assert row2["bedtime_pain"] == 5.0 and row2["substances"] == "kratom 2 g"
    assert np.isnan(a.table[9]["bedtime_pain"])
