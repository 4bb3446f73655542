"""Sleep/wake scorers from actigraphy, each a function over arrays.

* :func:`cole_kripke` -- Cole RJ, Kripke DF, Gruen W, Mullaney DJ, Gillin JC (1992).
  Automatic sleep/wake identification from wrist activity. Sleep 15(5):461-469.
  1-min epochs; the weights of the paper's 1-min maximum-count model (P = 0.001,
  W = 106, 54, 58, 76, 230, 74, 67 for epochs -4..+2) as applied to ActiGraph counts by
  ActiLife: counts / 100, capped at 300. Sleep when D < 1.
* :func:`sadeh` -- Sadeh A, Sharkey KM, Carskadon MA (1994). Activity-based sleep-wake
  identification: an empirical test of methodological issues. Sleep 17(3):201-207.
  PS = 7.601 - 0.065 MEAN - 1.08 NAT - 0.056 SD - 0.703 LG over 1-min counts capped at
  300; MEAN over the 11-min centred window, NAT the number of epochs in it with
  50 <= counts < 100, SD the sample standard deviation of the current and 5 preceding
  epochs, LG = ln(counts + 1). Sleep when PS >= 0. Windows reaching beyond the data
  are padded with zero counts (ActiLife's convention).
* :func:`van_hees_sib` -- van Hees VT et al. (2015). A novel, open access method to
  assess sleep duration using a wrist-worn accelerometer. PLoS ONE 10(11):e0142533.
  Sustained inactivity: no change in arm angle above 5 degrees for at least 5 min.
* :func:`hdcza_spt` -- van Hees VT et al. (2018). Estimating sleep parameters using an
  accelerometer without sleep diary. Sci Rep 8:12975. Sleep-period-time window from the
  5-min rolling median of the absolute angle change (threshold: 10th percentile x 15,
  blocks > 30 min, gaps < 60 min joined, the longest block wins).

All functions take arrays with ``NaN`` for missing data and return ``int8`` arrays with
``1`` sleep, ``0`` wake, ``-1`` unscored (missing input in the epoch itself).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

CK_WEIGHTS = np.array([106.0, 54.0, 58.0, 76.0, 230.0, 74.0, 67.0])
"""Cole-Kripke weights for epochs t-4 .. t+2."""
CK_SCALE = 0.001


def _prep(counts_per_min: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    c = np.asarray(counts_per_min, dtype=np.float64).reshape(-1)
    missing = ~np.isfinite(c)
    return np.where(missing, 0.0, np.maximum(c, 0.0)), missing


def cole_kripke(counts_per_min: F64) -> I8:
    """Cole-Kripke (1992) sleep/wake from 1-min ActiGraph counts (see module docstring)."""
    c, missing = _prep(counts_per_min)
    if c.size == 0:
        return np.zeros(0, dtype=np.int8)
    e = np.minimum(c / 100.0, 300.0)
    # D_t = P * sum_k W_k * e_{t+k}, k = -4..+2; zero padding outside the data
    padded = np.concatenate((np.zeros(4), e, np.zeros(2)))
    win = np.lib.stride_tricks.sliding_window_view(padded, 7)
    d = CK_SCALE * (win @ CK_WEIGHTS)
    out = np.where(d < 1.0, 1, 0).astype(np.int8)
    out[missing] = -1
    return out


def sadeh(counts_per_min: F64) -> I8:
    """Sadeh (1994) sleep/wake from 1-min ActiGraph counts (see module docstring)."""
    c, missing = _prep(counts_per_min)
    if c.size == 0:
        return np.zeros(0, dtype=np.int8)
    c = np.minimum(c, 300.0)
    padded = np.concatenate((np.zeros(5), c, np.zeros(5)))
    win11 = np.lib.stride_tricks.sliding_window_view(padded, 11)
    mean = win11.mean(axis=1)
    nat = ((win11 >= 50) & (win11 < 100)).sum(axis=1)
    win6 = np.lib.stride_tricks.sliding_window_view(padded[: c.size + 5], 6)
    sd = win6.std(axis=1, ddof=1)
    lg = np.log(c + 1.0)
    ps = 7.601 - 0.065 * mean - 1.08 * nat - 0.056 * sd - 0.703 * lg
    out = np.where(ps >= 0.0, 1, 0).astype(np.int8)
    out[missing] = -1
    return out


def angle_change_5s(angle_deg: F64, fs_hz: float) -> F64:
    """Absolute difference between successive 5-s means of the angle (van Hees 2015)."""
    a = np.asarray(angle_deg, dtype=np.float64)
    w = max(1, round(5 * fs_hz))
    n = a.size // w
    means = a[: n * w].reshape(n, w).mean(axis=1)
    return np.abs(np.diff(means, prepend=means[:1] if n else means))


def van_hees_sib(angle_change_deg: F64, *, threshold_deg: float = 5.0,
                 min_minutes: float = 5.0, step_s: float = 5.0) -> I8:
    """Sustained inactivity bouts: 1 where the angle changed by at most ``threshold_deg``
    for at least ``min_minutes`` (input: 5-s absolute angle changes, NaN = missing)."""
    d = np.asarray(angle_change_deg, dtype=np.float64)
    missing = ~np.isfinite(d)
    still = (np.nan_to_num(d, nan=np.inf) <= threshold_deg)
    min_len = round(min_minutes * 60 / step_s)
    padded = np.concatenate(([False], still, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    keep = (ends - starts) >= min_len
    mark = np.zeros(d.size + 1, dtype=np.int64)
    np.add.at(mark, starts[keep], 1)
    np.add.at(mark, ends[keep], -1)
    out = (np.cumsum(mark)[: d.size] > 0).astype(np.int8)
    out[missing] = -1
    return out


def hdcza_spt(angle_change_deg: F64, *, step_s: float = 5.0) -> tuple[int, int] | None:
    """HDCZA sleep-period-time window (van Hees 2018) as ``(first, last_exclusive)``
    indices into ``angle_change_deg`` (5-s steps), or ``None`` if no block qualifies."""
    d = np.asarray(angle_change_deg, dtype=np.float64)
    if d.size == 0 or not np.isfinite(d).any():
        return None
    w = round(300 / step_s)
    med = ndimage.median_filter(np.nan_to_num(d, nan=np.nanmax(d)), size=w, mode="nearest")
    thr = np.percentile(med, 10) * 15.0
    below = med < thr
    padded = np.concatenate(([False], below, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    long = (ends - starts) * step_s > 30 * 60
    starts, ends = starts[long], ends[long]
    if starts.size == 0:
        return None
    # join blocks separated by gaps shorter than 60 min
    join = (starts[1:] - ends[:-1]) * step_s < 60 * 60
    group = np.concatenate(([0], np.cumsum(~join)))
    g_start = np.asarray(ndimage.minimum(starts, group, np.unique(group)), dtype=np.int64)
    g_end = np.asarray(ndimage.maximum(ends, group, np.unique(group)), dtype=np.int64)
    best = int(np.argmax(g_end - g_start))
    return int(g_start[best]), int(g_end[best])
