"""Per-epoch staging features with the definitions of Walch et al. (2019), per-night
normalisation and temporal context.

Walch O, Huang Y, Forger D, Goldstein C (2019). Sleep stage prediction with raw
acceleration and photoplethysmography heart rate data derived from a consumer wearable
device. Sleep 42(12):zsz180. Feature definitions follow the paper's code
(ojwalch/sleep_classifiers), re-implemented here vectorised:

``count``
    activity counts on a 1-Hz grid; for each epoch the Gaussian-weighted mean
    (sigma 50 s, weights normalised to sum 1) of the samples strictly inside
    ``(epoch start - 285 s, epoch end + 285 s)`` -- 599 one-second samples centred on
    the epoch's middle. Seconds without data are left out of the weighted mean.
``hr``
    heart rate on a 1-Hz grid, mean removed, convolved with a 285-sample
    difference-of-Gaussians kernel ``exp(-(i-142)^2 / (2*120^2)) - 0.75 exp(-(i-142)^2 /
    (2*600^2))`` (edges padded by reflection), divided by the 90th percentile of its
    absolute value over the night, then the standard deviation over the same 599-s window.
``time_h``
    hours since the start of the first epoch of the night (Walch: since the first
    PSG-scored epoch; for sensord the night's recording start).
``cosine``
    ``-cos(2 pi (t - 5 h) / 24 h)`` with ``t`` the time since the first epoch.

Mapping to sensord's streams: Walch's counts came from the Apple Watch z axis (te Lindert
& Van Someren 2013 method, 15-s bins); sensord uses ActiGraph vector-magnitude counts
(:mod:`sensord.staging.motion`) or the device's counts. The two scales differ, so the
model sees ``log1p(count / mean count of the night)``: scale-free, so one device's counts
transfer to another's. The hr feature is already self-normalised (90th percentile) and is
further divided by its standard deviation over the night.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal
from scipy.stats import rankdata

from sensord.model import EPOCH_S

F64 = npt.NDArray[np.float64]

WINDOW_S = 285
"""Half-window beyond the epoch (Walch: 10 * 30 - 15 s)."""
COUNT_SIGMA_S = 50.0
DOG_LEN = 285
DOG_SIGMAS = (120.0, 600.0)
DOG_SCALAR = 0.75
CONTEXT_WINDOWS = (5, 11, 21, 41, 81)
CONTEXT_STD_WINDOWS = (11, 41)
CONTEXT_SHIFTS = (10, 20, 40)
_HALF = WINDOW_S + EPOCH_S // 2 - 1  # 299: samples each side of the epoch's middle


def _window_kernel(sigma: float | None) -> F64:
    i = np.arange(-_HALF, _HALF + 1, dtype=np.float64)
    if sigma is None:
        return np.ones_like(i)
    return np.exp(-0.5 * (i / sigma) ** 2)


def _weighted_at_centres(x_1hz: F64, kernel: F64, n_epochs: int) -> tuple[F64, F64]:
    """Weighted sum of finite samples and sum of their weights around each epoch middle
    (sample ``15 + 30 k``)."""
    ok = np.isfinite(x_1hz)
    xv = np.where(ok, x_1hz, 0.0)
    num = signal.fftconvolve(xv, kernel, mode="same")
    den = signal.fftconvolve(ok.astype(np.float64), kernel, mode="same")
    centres = EPOCH_S // 2 + EPOCH_S * np.arange(n_epochs)
    centres = np.minimum(centres, max(x_1hz.size - 1, 0))
    if x_1hz.size == 0:
        return np.full(n_epochs, np.nan), np.zeros(n_epochs)
    return num[centres], den[centres]


def count_feature(counts_1hz: F64, n_epochs: int) -> F64:
    """Walch's count feature per epoch from 1-Hz counts aligned to the first epoch."""
    num, den = _weighted_at_centres(counts_1hz, _window_kernel(COUNT_SIGMA_S), n_epochs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan)


def _dog_kernel() -> F64:
    i = np.arange(DOG_LEN, dtype=np.float64) - DOG_LEN // 2
    s1, s2 = DOG_SIGMAS
    return np.exp(-0.5 * (i / s1) ** 2) - DOG_SCALAR * np.exp(-0.5 * (i / s2) ** 2)


def hr_feature(hr_1hz: F64, n_epochs: int) -> F64:
    """Walch's heart-rate feature per epoch from 1-Hz heart rate aligned to the first
    epoch (``NaN`` = no heart rate that second)."""
    x = np.asarray(hr_1hz, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < DOG_LEN:
        return np.full(n_epochs, np.nan)
    # fill gaps by linear interpolation only for the band-pass step; gap seconds stay
    # excluded from the window statistics below
    idx = np.arange(x.size)
    filled = np.interp(idx, idx[ok], x[ok])
    filled = filled - filled.mean()
    half = DOG_LEN // 2
    padded = np.concatenate((filled[:half][::-1], filled, filled[-half:][::-1]))
    smooth = np.convolve(padded, _dog_kernel(), mode="valid")[: x.size]
    scale = np.percentile(np.abs(smooth[ok]), 90)
    z = smooth / scale if scale > 0 else smooth
    z = np.where(ok, z, np.nan)
    box = _window_kernel(None)
    s1, n = _weighted_at_centres(z, box, n_epochs)
    s2, _ = _weighted_at_centres(z * z, box, n_epochs)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = s2 / n - (s1 / n) ** 2
    return np.where(n >= 30, np.sqrt(np.maximum(var, 0.0)), np.nan)


def time_features(n_epochs: int) -> tuple[F64, F64]:
    """``time_h`` and ``cosine`` per epoch (time measured at each epoch start)."""
    t_s = np.arange(n_epochs, dtype=np.float64) * EPOCH_S
    return t_s / 3600.0, -np.cos(2 * np.pi * (t_s - 5 * 3600.0) / 86400.0)


def normalise_night(count: F64 | None, hr: F64 | None) -> tuple[F64 | None, F64 | None]:
    """Per-night normalisation (module docstring); ``NaN`` stays ``NaN``."""
    c_out = h_out = None
    if count is not None:
        m = np.nanmean(count) if np.isfinite(count).any() else np.nan
        c_out = np.log1p(np.maximum(count, 0.0) / (m + 1e-6)) if np.isfinite(m) else count
    if hr is not None:
        s = np.nanstd(hr) if np.isfinite(hr).sum() > 1 else np.nan
        h_out = hr / (s + 1e-9) if np.isfinite(s) else hr
    return c_out, h_out


def _nan_uniform(x: F64, w: int) -> tuple[F64, F64]:
    ok = np.isfinite(x)
    xv = np.where(ok, x, 0.0)
    s = ndimage.uniform_filter1d(xv, w, mode="nearest")
    n = ndimage.uniform_filter1d(ok.astype(np.float64), w, mode="nearest")
    return s, n


def context_columns(base: F64) -> list[F64]:
    """Temporal context of one normalised feature: centred means over 5..81 epochs,
    centred standard deviations, 21-epoch means shifted 10/20/40 epochs into the past and
    future, and the 21-epoch maximum. Missing epochs are left out of every window; a
    window holding none takes the night's mean."""
    x = np.asarray(base, dtype=np.float64)
    cols: list[F64] = [x]
    with np.errstate(invalid="ignore", divide="ignore"):
        for w in CONTEXT_WINDOWS:
            s, n = _nan_uniform(x, w)
            cols.append(s / n)
        for w in CONTEXT_STD_WINDOWS:
            s, n = _nan_uniform(x, w)
            s2, _ = _nan_uniform(x * x, w)
            cols.append(np.sqrt(np.maximum(s2 / n - (s / n) ** 2, 0.0)))
        s, n = _nan_uniform(x, 21)
        m21 = s / n
    for sh in CONTEXT_SHIFTS:
        past = np.concatenate((np.full(sh, m21[0] if m21.size else np.nan), m21[:-sh]))[: x.size]
        fut = np.concatenate((m21[sh:], np.full(sh, m21[-1] if m21.size else np.nan)))[: x.size]
        cols.extend((past, fut))
    filled = np.where(np.isfinite(x), x, -np.inf)
    mx = ndimage.maximum_filter1d(filled, 21, mode="nearest") if x.size else x
    cols.append(np.where(np.isfinite(mx), mx, np.nan))
    # context that reaches only missing epochs (next to a gap) takes the night's mean of
    # the feature, a neutral value; the epoch's own value stays NaN when it is missing
    fill = float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
    return [cols[0], *(np.where(np.isfinite(c), c, fill) for c in cols[1:])]


def night_rank(x: F64) -> F64:
    """Rank of each finite value within the night, scaled to (0, 1]; ``NaN`` stays ``NaN``.

    Ties share their mean rank (as ``scipy.stats.rankdata``)."""
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    if ok.any():
        out[ok] = rankdata(x[ok]) / ok.sum()
    return out


def _mean_w(x: F64, w: int) -> F64:
    s, n = _nan_uniform(x, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s / n
    fill = float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
    return np.where(np.isfinite(m), m, fill)


LONG_WINDOW = 161
PRODUCT_WINDOWS = (5, 21, 81)


def design_matrix(count_n: F64 | None, hr_n: F64 | None, n_epochs: int) -> F64:
    """Model inputs of one feature set (``None`` = stream absent):

    * for each present feature: its context columns (:func:`context_columns`) and its
      161-epoch (80-min) centred mean;
    * with heart rate: the within-night rank of the hr feature (a second per-night
      normalisation), its 161-epoch mean and its centred means over 5..81 epochs;
    * with both: products of the count and hr centred means over 5, 21 and 81 epochs;
    * ``time_h / 8``, its square and ``cosine``.
    """
    cols: list[F64] = []
    if count_n is not None:
        cols.extend(context_columns(count_n))
        cols.append(_mean_w(count_n, LONG_WINDOW))
    if hr_n is not None:
        cols.extend(context_columns(hr_n))
        cols.append(_mean_w(hr_n, LONG_WINDOW))
        rank = night_rank(hr_n)
        cols.append(_mean_w(rank, LONG_WINDOW))
        cols.extend(_mean_w(rank, w) for w in CONTEXT_WINDOWS)
    if count_n is not None and hr_n is not None:
        cols.extend(_mean_w(count_n, w) * _mean_w(hr_n, w) for w in PRODUCT_WINDOWS)
    time_h, cosine = time_features(n_epochs)
    tt = time_h / 8.0
    if n_epochs == 0:
        return np.zeros((0, len(cols) + 3))
    return np.column_stack([*cols, tt, tt**2, cosine])
