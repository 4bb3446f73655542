"""N-of-1 effect estimates: nights with an exposure versus nights without. Pure numpy.

One participant, many nights. For a sleep metric ``y`` the effect of an exposure (a
substance taken that evening, a dose band, a bedtime pain level) is the difference of
mean ``y`` between exposed and unexposed nights,

    effect = mean(y[exposed]) - mean(y[unexposed]),

with a percentile bootstrap confidence interval (Efron & Tibshirani 1993, *An
Introduction to the Bootstrap*, ch. 13): each group is resampled with replacement on its
own (the numbers of exposed and unexposed nights stay fixed, as in the data), the
difference is recomputed ``n_boot`` times, and the interval is the
``(1-level)/2`` and ``(1+level)/2`` quantiles of those differences. The generator is
seeded, so a report is reproducible.

These are observational contrasts within one person: nights are not randomised, other
exposures and pain are not held fixed, nights are not independent. The estimates say
what differed, not what caused it (see the caveats in :data:`CAVEATS`).

Pain against a metric is also summarised by the least-squares slope of the metric on the
0-10 rating (units of the metric per rating point) with a bootstrap over nights (pairs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord import annotate as an

F64 = npt.NDArray[np.float64]

MIN_NIGHTS = 4
"""Fewest nights in *each* group before an effect is estimated (else "not enough nights")."""
N_BOOT = 4000
LEVEL = 0.95

PAIN_BANDS = ((0, 4, "0-4 none/mild"), (5, 6, "5-6 moderate"), (7, 10, "7-10 severe"))
"""Bedtime-pain bands after the NRS cut-points of Serlin et al. 1995 (Pain 61:277-284)."""

CAVEATS = (
    "Observational: nights were not assigned at random, so a difference between nights with "
    "and without a substance may come from something else that goes with it (pain, stress, "
    "the day of the week, other substances).",
    "One person: these numbers describe this participant only and need not hold for anyone else.",
    "Few nights: with few nights in a group the intervals are wide and may still mislead; "
    "'not enough nights' is shown when a group has fewer than "
    f"{MIN_NIGHTS} nights.",
    "Wearable sleep staging is an estimate: stage minutes (REM, deep) from heart rate and "
    "motion agree only moderately with polysomnography.",
    "Bootstrap intervals assume nights are exchangeable; runs of similar nights make them "
    "too narrow.",
)


@dataclass(frozen=True, slots=True)
class Effect:
    """Difference of means between exposed and unexposed nights.

    ``diff``, ``ci_low`` and ``ci_high`` are NaN when ``enough`` is False (a group has
    fewer than ``min_nights`` nights with a value).
    """

    n_exposed: int
    n_unexposed: int
    mean_exposed: float
    mean_unexposed: float
    diff: float
    ci_low: float
    ci_high: float
    level: float
    enough: bool

    def describe(self, unit: str = "") -> str:
        """Plain text, e.g. ``-18.2 min (95% CI -25.1 to -11.0; 9 vs 21 nights)``."""
        nights = f"{self.n_exposed} vs {self.n_unexposed} nights"
        if not self.enough:
            return f"not enough nights ({nights}; need {MIN_NIGHTS} in each)"
        u = f" {unit}" if unit else ""
        return (
            f"{self.diff:+.1f}{u} ({self.level:.0%} CI {self.ci_low:+.1f} to "
            f"{self.ci_high:+.1f}; {nights})"
        )


@dataclass(frozen=True, slots=True)
class Slope:
    """Least-squares slope of a metric on a predictor, with a pairs-bootstrap interval."""

    n: int
    slope: float
    ci_low: float
    ci_high: float
    level: float
    enough: bool


def _finite(values: npt.ArrayLike) -> F64:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _quantiles(draws: F64, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_difference(
    exposed: npt.ArrayLike,
    unexposed: npt.ArrayLike,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    min_nights: int = MIN_NIGHTS,
) -> Effect:
    """Mean of ``exposed`` minus mean of ``unexposed`` with a percentile bootstrap CI.

    Parameters
    ----------
    exposed, unexposed
        Metric values, one per night; NaN (metric missing that night) is dropped.
    n_boot
        Bootstrap resamples.
    level
        Confidence level of the interval.
    seed
        Seed of the random generator (``numpy.random.default_rng``).
    min_nights
        Fewest nights per group; below it the effect is not estimated.
    """
    x = _finite(exposed)
    y = _finite(unexposed)
    mx = float(x.mean()) if x.size else float("nan")
    my = float(y.mean()) if y.size else float("nan")
    if x.size < min_nights or y.size < min_nights:
        nan = float("nan")
        return Effect(int(x.size), int(y.size), mx, my, nan, nan, nan, level, False)
    rng = np.random.default_rng(seed)
    bx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    by = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    lo, hi = _quantiles(bx - by, level)
    return Effect(int(x.size), int(y.size), mx, my, mx - my, lo, hi, level, True)


def ols_slope(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    min_nights: int = 2 * MIN_NIGHTS,
) -> Slope:
    """Slope of the least-squares line ``y ~ a + b x`` with a pairs-bootstrap interval.

    ``b = sum((x - mean x)(y - mean y)) / sum((x - mean x)^2)``; pairs with a NaN are
    dropped. Resamples where ``x`` is constant are left out of the interval.
    """
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    n = int(xa.size)
    nan = float("nan")
    if n < min_nights or np.ptp(xa) == 0:
        return Slope(n, nan, nan, nan, level, False)
    dx = xa - xa.mean()
    b = float((dx * (ya - ya.mean())).sum() / (dx * dx).sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    bx, byy = xa[idx], ya[idx]
    bdx = bx - bx.mean(axis=1, keepdims=True)
    den = (bdx * bdx).sum(axis=1)
    num = (bdx * (byy - byy.mean(axis=1, keepdims=True))).sum(axis=1)
    usable = den > 0
    lo, hi = _quantiles(num[usable] / den[usable], level)
    return Slope(n, b, lo, hi, level, True)


def median_split(doses: npt.ArrayLike) -> float:
    """Dose-band boundary: the median dose (nights with dose <= it are the lower band)."""
    d = _finite(doses)
    return float(np.median(d)) if d.size else float("nan")


def pain_band(rating: float) -> str:
    """Label of the :data:`PAIN_BANDS` band containing a 0-10 rating ('' for NaN)."""
    if not np.isfinite(rating):
        return ""
    for lo, hi, label in PAIN_BANDS:
        if lo <= rating <= hi:
            return label
    return ""


# --------------------------------------------------------------------------- per person
@dataclass(frozen=True, slots=True)
class Metric:
    """A night metric the N-of-1 view compares (``key`` as in the ``night`` schema)."""

    key: str
    label: str
    unit: str


METRICS: tuple[Metric, ...] = (
    Metric("tst_min", "Total sleep time", "min"),
    Metric("se_pct", "Sleep efficiency", "%"),
    Metric("waso_min", "Wake after sleep onset", "min"),
    Metric("sol_min", "Sleep-onset latency", "min"),
    Metric("rem_min", "REM sleep", "min"),
    Metric("deep_min", "Deep sleep", "min"),
    Metric("awakenings", "Awakenings", ""),
    Metric("hr_mean_bpm", "Nocturnal heart rate", "bpm"),
    Metric("rmssd_ms", "Nocturnal RMSSD", "ms"),
    Metric("diary_quality", "Diary sleep quality", "1-5"),
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One row of the N-of-1 tables: an exposure, a metric, and its :class:`Effect`."""

    exposure: str
    contrast: str
    metric: Metric
    effect: Effect


@dataclass(frozen=True, slots=True)
class PainTrend:
    metric: Metric
    slope: Slope


@dataclass(frozen=True, slots=True)
class PersonAnalysis:
    """Everything the person report shows.

    ``table`` has one row per night (sorted): the metrics, ``substances`` (text),
    ``bedtime_pain`` (mean of that night's bedtime ratings, NaN if none).
    """

    table: list[dict[str, object]]
    same_night: list[Comparison]
    next_night: list[Comparison]
    dose_bands: list[Comparison]
    pain_bands: list[Comparison]
    pain_trends: list[PainTrend]


def _column(table: list[dict[str, object]], key: str) -> F64:
    out = np.full(len(table), np.nan)
    for i, row in enumerate(table):
        v = row.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[i] = float(v)
    return out


def analyse_person(
    nights: list[dict[str, object]],
    annotations: Sequence[an.Annotation],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_nights: int = MIN_NIGHTS,
) -> PersonAnalysis:
    """N-of-1 comparisons for one participant.

    Parameters
    ----------
    nights
        One mapping per scored night: ``night`` (YYYY-MM-DD) and metric values named as
        in :data:`METRICS` (missing or NaN = not available).
    annotations
        The participant's annotations in force (:func:`sensord.annotate.current`).

    Notes
    -----
    A substance counts for the night it is assigned to (taken from 06:00 that day up to
    the night: see :mod:`sensord.annotate`). *Same night*: nights with the substance
    versus nights without it. *Next night*: nights right after a night with it (and
    without it themselves) versus nights with neither. *Dose bands*: nights with a dose at
    or below the participant's median dose, and above it, each versus nights without.
    *Pain*: nights by bedtime pain band versus the 0-4 band, and the slope per rating
    point.
    """
    rows = sorted((dict(r) for r in nights), key=lambda r: str(r["night"]))
    index = {str(r["night"]): i for i, r in enumerate(rows)}
    labels = list(index)
    n = len(rows)
    exposure: dict[str, np.ndarray] = {}
    dose_units: dict[str, dict[str, list[float]]] = {}
    night_doses: dict[str, dict[int, dict[str, float]]] = {}
    pain_sum = np.zeros(n)
    pain_n = np.zeros(n)
    quality = np.full(n, np.nan)
    texts: list[list[str]] = [[] for _ in range(n)]
    for a in annotations:
        if a.night not in index:
            continue
        i = index[a.night]
        p = a.payload
        if isinstance(p, an.Substance):
            exposure.setdefault(p.name, np.zeros(n, dtype=bool))[i] = True
            texts[i].append(an.summary(a))
            if p.dose is not None and p.unit is not None:
                per = night_doses.setdefault(p.name, {}).setdefault(i, {})
                per[p.unit] = per.get(p.unit, 0.0) + p.dose
                dose_units.setdefault(p.name, {}).setdefault(p.unit, []).append(p.dose)
        elif isinstance(p, an.Pain) and p.context == "bedtime":
            pain_sum[i] += p.rating_nrs
            pain_n[i] += 1
        elif isinstance(p, an.Diary):
            quality[i] = p.quality_1_5
    pain = np.where(pain_n > 0, pain_sum / np.maximum(pain_n, 1), np.nan)
    for i, row in enumerate(rows):
        row["substances"] = "; ".join(texts[i])
        row["bedtime_pain"] = float(pain[i])
        if "diary_quality" not in row or row["diary_quality"] is None:
            row["diary_quality"] = float(quality[i])

    # consecutive-night structure from the labels (a gap breaks "next night")
    dates = [dt.date.fromisoformat(x) for x in labels]
    prev_idx = np.full(n, -1)
    for i in range(1, n):
        if (dates[i] - dates[i - 1]).days == 1:
            prev_idx[i] = i - 1

    values = {m.key: _column(rows, m.key) for m in METRICS}
    same: list[Comparison] = []
    nxt: list[Comparison] = []
    bands: list[Comparison] = []
    k = 0

    def compare(
        mask_a: np.ndarray,
        mask_b: np.ndarray,
        exposure_name: str,
        contrast: str,
        out: list[Comparison],
    ) -> None:
        nonlocal k
        for m in METRICS:
            eff = mean_difference(
                values[m.key][mask_a],
                values[m.key][mask_b],
                n_boot=n_boot,
                seed=seed + k,
                min_nights=min_nights,
            )
            k += 1
            if eff.n_exposed + eff.n_unexposed > 0:  # metric not recorded at all: no row
                out.append(Comparison(exposure_name, contrast, m, eff))

    for name in sorted(exposure):
        on = exposure[name]
        compare(on, ~on, name, f"nights with {name} vs without", same)
        after = np.zeros(n, dtype=bool)
        has_prev = prev_idx >= 0
        after[has_prev] = on[prev_idx[has_prev]]
        after_only = after & ~on
        neither = ~on & ~after
        compare(after_only, neither, name, f"nights after {name} vs nights with neither", nxt)
        units = dose_units.get(name, {})
        if units:
            unit = max(units, key=lambda u: len(units[u]))
            dose = np.full(n, np.nan)
            for i, per in night_doses.get(name, {}).items():
                if unit in per and len(per) == 1:
                    dose[i] = per[unit]
            cut = median_split(dose)
            if np.isfinite(cut):
                low = on & (dose <= cut)
                high = on & (dose > cut)
                compare(low, ~on, name, f"{name} <= {cut:g} {unit} vs none", bands)
                compare(high, ~on, name, f"{name} > {cut:g} {unit} vs none", bands)

    pain_cmp: list[Comparison] = []
    band_of = np.array([pain_band(v) for v in pain])
    base = band_of == PAIN_BANDS[0][2]
    for _, _, label in PAIN_BANDS[1:]:
        compare(
            band_of == label, base, "bedtime pain", f"pain {label} vs {PAIN_BANDS[0][2]}", pain_cmp
        )
    trends = [
        PainTrend(m, ols_slope(pain, values[m.key], n_boot=n_boot, seed=seed + 7919 + j))
        for j, m in enumerate(METRICS)
    ]
    return PersonAnalysis(rows, same, nxt, bands, pain_cmp, trends)
