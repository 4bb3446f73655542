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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    "One person: these numbers describe this participant only and need not hold for anyone "
    "else.",
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
