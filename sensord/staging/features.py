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

import functools
import math

import numpy as np
import numpy.typing as npt

from sensord.model import EPOCH_S
from sensord.staging import filters

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


_GATHER_BYTES = 4 << 20
"""Bound on the windows :func:`_sums_at_centres` gathers at once (epochs x rows x kernel
samples of float64). A whole night's at once was the scoring worker's peak: 960 epochs x
3 rows x 599 samples, 13.8 MB for the heart-rate feature of an 8-h night."""


def _weighted_at_centres(x_1hz: F64, kernel: F64, n_epochs: int,
                         first_epoch: int = 0) -> tuple[F64, F64]:
    """Weighted sum of finite samples and sum of their weights around each epoch middle
    (sample ``15 + 30 k``; the kernel's middle on it, zero beyond the data), for epochs
    ``first_epoch`` ... ``n_epochs - 1``.

    Evaluated at the epoch middles only -- one dot product with the kernel per epoch --
    not as a full convolution of the 1-Hz series (30 times the work, and through an FFT
    that rounds a zero weight to about 1e-17)."""
    sums = _sums_at_centres(x_1hz[None, :], kernel, n_epochs, first_epoch)
    return sums[0], sums[1]


def _sums_at_centres(rows: F64, kernel: F64, n_epochs: int, first_epoch: int = 0) -> F64:
    """:func:`_weighted_at_centres` of several series that are finite at the same samples
    (those of ``rows[0]``), at once: ``(len(rows) + 1, n_epochs - first_epoch)``, the
    weighted sums of each row, then the sum of the weights. Each epoch's sums come from
    its own window, so they are the same whichever epochs are asked for."""
    k = rows.shape[0]
    n_out = n_epochs - first_epoch
    if rows.shape[1] == 0:
        return np.concatenate((np.full((k, n_out), np.nan), np.zeros((1, n_out))))
    ok = np.isfinite(rows[0])
    half = kernel.size // 2
    padded = np.zeros((k + 1, rows.shape[1] + 2 * half))
    padded[:k, half:half + rows.shape[1]] = np.where(ok, rows, 0.0)
    padded[k, half:half + rows.shape[1]] = ok
    windows = filters.windows(padded, kernel.size)  # (k + 1, n + 2 half - 598, 599)
    centres = _centres(rows.shape[1], n_epochs)[first_epoch:]
    flipped = kernel[::-1]  # a convolution: the kernel runs backwards over the samples
    out = np.empty((k + 1, n_out))
    block = max(1, _GATHER_BYTES // ((k + 1) * kernel.size * 8))
    for lo in range(0, n_out, block):
        out[:, lo:lo + block] = windows[:, centres[lo:lo + block]] @ flipped
    return out


def _from_epoch(values: F64, n_epochs: int, first_epoch: int) -> F64:
    """``values`` of epochs ``first_epoch`` on, as ``n_epochs`` values (``NaN`` before)."""
    if first_epoch == 0:
        return values
    out = np.full(n_epochs, np.nan)
    out[first_epoch:] = values
    return out


@functools.lru_cache(maxsize=4)
def _centres(n_samples: int, n_epochs: int) -> npt.NDArray[np.int64]:
    """Index of each epoch's middle sample (the last sample where the data end sooner);
    kept between calls, read-only (the live stager asks for the same every 30 s)."""
    centres = np.minimum(EPOCH_S // 2 + EPOCH_S * np.arange(n_epochs), n_samples - 1)
    centres.setflags(write=False)
    return centres


def count_feature(counts_1hz: F64, n_epochs: int, first_epoch: int = 0) -> F64:
    """Walch's count feature per epoch from 1-Hz counts aligned to the first epoch
    (``NaN`` before ``first_epoch``: computed from there on only)."""
    num, den = _weighted_at_centres(counts_1hz, _COUNT_KERNEL, n_epochs, first_epoch)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _from_epoch(np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan),
                           n_epochs, first_epoch)


def _dog_kernel() -> F64:
    i = np.arange(DOG_LEN, dtype=np.float64) - DOG_LEN // 2
    s1, s2 = DOG_SIGMAS
    return np.exp(-0.5 * (i / s1) ** 2) - DOG_SCALAR * np.exp(-0.5 * (i / s2) ** 2)


# the kernels, computed once (read-only)
_BOX = _window_kernel(None)
_COUNT_KERNEL = _window_kernel(COUNT_SIGMA_S)
_DOG_KERNEL = _dog_kernel()
_BOX.setflags(write=False)
_COUNT_KERNEL.setflags(write=False)
_DOG_KERNEL.setflags(write=False)


def percentile_90(values: F64) -> float:
    """``np.percentile(values, 90)`` (linear interpolation between the two order
    statistics around ``0.9 (n - 1)``; NumPy's rounding), from one partition: a tenth of
    ``np.percentile``'s cost on the ten-minute window the live stager handles every 30 s.
    ``NaN`` if a value is ``NaN`` or there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n == 0 or np.isnan(v).any():
        return float("nan")
    at = (n - 1) * 0.9
    lo = math.floor(at)
    if lo >= n - 1:
        return float(v.max())
    part = np.partition(v, (lo, lo + 1))
    below, above = float(part[lo]), float(part[lo + 1])
    gamma = at - lo
    diff = above - below
    # NumPy interpolates from the nearer end: from above where gamma >= 0.5
    return above - diff * (1 - gamma) if gamma >= 0.5 else below + diff * gamma


def hr_feature(hr_1hz: F64, n_epochs: int, first_epoch: int = 0) -> F64:
    """Walch's heart-rate feature per epoch from 1-Hz heart rate aligned to the first
    epoch (``NaN`` = no heart rate that second; ``NaN`` before ``first_epoch``: the
    window statistics are taken from there on only, the scale from all samples)."""
    x = np.asarray(hr_1hz, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < DOG_LEN:
        return np.full(n_epochs, np.nan)
    # fill gaps by linear interpolation only for the band-pass step; gap seconds stay
    # excluded from the window statistics below
    idx = np.arange(x.size)
    filled = np.interp(idx, idx[ok], x[ok])
    filled = filled - filled.sum() / filled.size  # np.mean's sum and division
    half = DOG_LEN // 2
    padded = np.concatenate((filled[:half][::-1], filled, filled[-half:][::-1]))
    smooth = np.convolve(padded, _DOG_KERNEL, mode="valid")[: x.size]
    scale = percentile_90(np.abs(smooth[ok]))
    z = smooth / scale if scale > 0 else smooth
    z = np.where(ok, z, np.nan)
    z_sq = z * z
    if np.array_equal(np.isfinite(z_sq), ok):  # as always, unless z * z overflows
        s1, s2, n = _sums_at_centres(np.stack((z, z_sq)), _BOX, n_epochs, first_epoch)
    else:
        s1, n = _weighted_at_centres(z, _BOX, n_epochs, first_epoch)
        s2, _ = _weighted_at_centres(z_sq, _BOX, n_epochs, first_epoch)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = s2 / n - (s1 / n) ** 2
    return _from_epoch(np.where(n >= 30, np.sqrt(np.maximum(var, 0.0)), np.nan), n_epochs,
                       first_epoch)


def time_features(n_epochs: int, first: int = 0) -> tuple[F64, F64]:
    """``time_h`` and ``cosine`` per epoch (time measured at each epoch start), of epochs
    ``first`` ... ``n_epochs - 1`` of the night."""
    t_s = np.arange(first, n_epochs, dtype=np.float64) * EPOCH_S
    return t_s / 3600.0, -np.cos(2 * np.pi * (t_s - 5 * 3600.0) / 86400.0)


def nan_mean_std(x: F64) -> tuple[float, float]:
    """``np.nanmean(x)`` and ``np.nanstd(x)`` of a 1-D array (NumPy's steps, so the same
    values: ``NaN`` set to 0, pairwise sums over the count of the others), without their
    wrappers, which cost more than the sums on the live stager's night so far. ``NaN``
    for both where every value is ``NaN``."""
    missing = np.isnan(x)
    count = x.size - int(np.count_nonzero(missing))
    if count == 0:
        return float("nan"), float("nan")
    present = np.where(missing, 0.0, x)
    mean = float(present.sum()) / count
    dev = np.where(missing, 0.0, present - mean)
    return mean, math.sqrt(float((dev * dev).sum()) / count)


def normalise_night(count: F64 | None, hr: F64 | None) -> tuple[F64 | None, F64 | None]:
    """Per-night normalisation (module docstring); ``NaN`` stays ``NaN``."""
    c_out = h_out = None
    if count is not None:
        m = nan_mean_std(count)[0] if np.isfinite(count).any() else np.nan
        c_out = np.log1p(np.maximum(count, 0.0) / (m + 1e-6)) if np.isfinite(m) else count
    if hr is not None:
        s = nan_mean_std(hr)[1] if np.count_nonzero(np.isfinite(hr)) > 1 else np.nan
        h_out = hr / (s + 1e-9) if np.isfinite(s) else hr
    return c_out, h_out


class _WindowMeans:
    """Centred means over ``w`` epochs of several series at once, missing epochs left out,
    the edges padded with the first / last value.

    One running mean (``filters.running_mean_nearest``, as ``ndimage.uniform_filter1d``)
    over the stacked series per window length (and one over
    their masks), instead of one per series and length: the design matrix of a 20-epoch
    window needs 12 filter calls, not about a hundred (the live daemon scores one every
    30 s). Each column is filtered exactly as on its own.
    """

    def __init__(self, series: list[F64], windows: tuple[int, ...]) -> None:
        x = np.stack(series, axis=1)
        ok = np.isfinite(x)
        xv = np.where(ok, x, 0.0)
        okf = ok.astype(np.float64)
        self._means: dict[int, F64] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for w in windows:  # every series' means at once (see mean)
                s = filters.running_mean_nearest(xv, w)
                n = filters.running_mean_nearest(okf, w)
                self._means[w] = np.where(n > 0.5 / w, s / n, np.nan)
        finite = ok.sum(axis=0)
        self.night_mean = np.where(finite > 0, xv.sum(axis=0) / np.maximum(finite, 1), np.nan)
        """Each series' mean over the night's finite values (``NaN`` if none)."""

    def mean(self, j: int, w: int) -> F64:
        """Window means of series ``j`` (``NaN`` where the window holds no finite value).

        The filter's running sums leave rounding residue (about 1e-16) where the true
        share of finite values is 0, so a window counts as empty below half an epoch's
        share (``0.5 / w``) rather than at exactly 0."""
        return self._means[w][:, j]


def _context(x: F64, means: _WindowMeans, j: int, j_sq: int) -> list[F64]:
    """:func:`context_columns` of ``x`` (series ``j`` of ``means``, its square ``j_sq``)."""
    cols: list[F64] = [x]
    for w in CONTEXT_WINDOWS:
        cols.append(means.mean(j, w))
    for w in CONTEXT_STD_WINDOWS:
        m = means.mean(j, w)
        cols.append(np.sqrt(np.maximum(means.mean(j_sq, w) - m * m, 0.0)))
    m21 = means.mean(j, 21)
    for sh in CONTEXT_SHIFTS:
        past = np.concatenate((np.full(sh, m21[0] if m21.size else np.nan), m21[:-sh]))[: x.size]
        fut = np.concatenate((m21[sh:], np.full(sh, m21[-1] if m21.size else np.nan)))[: x.size]
        cols.extend((past, fut))
    filled = np.where(np.isfinite(x), x, -np.inf)
    mx = filters.running_max_nearest(filled, 21) if x.size else x
    cols.append(np.where(np.isfinite(mx), mx, np.nan))
    # context that reaches only missing epochs (next to a gap) takes the night's mean of
    # the feature, a neutral value; the epoch's own value stays NaN when it is missing
    context = np.column_stack(cols[1:])
    fill = means.night_mean[j]
    return [cols[0], *np.where(np.isfinite(context), context, fill).T]


def context_columns(base: F64) -> list[F64]:
    """Temporal context of one normalised feature: centred means over 5..81 epochs,
    centred standard deviations, 21-epoch means shifted 10/20/40 epochs into the past and
    future, and the 21-epoch maximum. Missing epochs are left out of every window; a
    window holding none takes the night's mean."""
    x = np.asarray(base, dtype=np.float64)
    return _context(x, _WindowMeans([x, x * x], _CONTEXT_LENGTHS), 0, 1)


def night_rank(x: F64) -> F64:
    """Rank of each finite value within the night, scaled to (0, 1]; ``NaN`` stays ``NaN``.

    Ties share their mean rank (as ``scipy.stats.rankdata``)."""
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    if ok.any():
        out[ok] = average_ranks(x[ok]) / ok.sum()
    return out


def average_ranks(x: F64) -> F64:
    """Ranks 1..n of ``x``, ties sharing the mean of the ranks they span: the values of
    ``scipy.stats.rankdata`` at a fifth of its per-call cost on a 20-epoch window (its
    array-API layers cost ~0.1 ms a call; the daemon ranks a window every 30 s)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    out = np.empty(x.size)
    if x.size < 2 or bool((xs[1:] != xs[:-1]).all()):  # no ties (as most nights)
        out[order] = np.arange(1.0, x.size + 1.0)  # the mean rank of each one-value group
        return out
    new_value = np.concatenate(([True], xs[1:] != xs[:-1]))
    group = np.cumsum(new_value) - 1  # tie group of each sorted element
    bounds = np.concatenate((np.flatnonzero(new_value), [x.size]))  # group starts, then n
    mean_rank = 0.5 * (bounds[:-1] + 1 + bounds[1:])  # (first + last) / 2, 1-based
    out[order] = mean_rank[group]
    return out


LONG_WINDOW = 161
PRODUCT_WINDOWS = (5, 21, 81)
_CONTEXT_LENGTHS = tuple(sorted({*CONTEXT_WINDOWS, *CONTEXT_STD_WINDOWS, 21}))
_DESIGN_LENGTHS = tuple(sorted({*_CONTEXT_LENGTHS, LONG_WINDOW, *PRODUCT_WINDOWS}))
_DESIGN_ROW = {w: i for i, w in enumerate(_DESIGN_LENGTHS)}
_CONTEXT_ROWS = [_DESIGN_ROW[w] for w in CONTEXT_WINDOWS]
_STD_ROWS = [_DESIGN_ROW[w] for w in CONTEXT_STD_WINDOWS]
_PRODUCT_ROWS = [_DESIGN_ROW[w] for w in PRODUCT_WINDOWS]


def design_matrix(count_n: F64 | None, hr_n: F64 | None, n_epochs: int) -> F64:
    """Model inputs of one feature set (``None`` = stream absent):

    * for each present feature: its context columns (:func:`context_columns`) and its
      161-epoch (80-min) centred mean;
    * with heart rate: the within-night rank of the hr feature (a second per-night
      normalisation), its 161-epoch mean and its centred means over 5..81 epochs;
    * with both: products of the count and hr centred means over 5, 21 and 81 epochs;
    * ``time_h / 8``, its square and ``cosine``.
    """
    series: list[F64] = []
    if count_n is not None:
        series += [count_n, count_n * count_n]
    if hr_n is not None:
        rank = night_rank(hr_n)
        series += [hr_n, hr_n * hr_n, rank]
    if not series:
        series = [np.zeros(n_epochs)]
    means = _WindowMeans(series, _DESIGN_LENGTHS)

    def filled_mean(j: int, w: int) -> F64:
        m = means.mean(j, w)
        return np.where(np.isfinite(m), m, means.night_mean[j])

    cols: list[F64] = []
    j_hr = 0
    if count_n is not None:
        cols.extend(_context(count_n, means, 0, 1))
        cols.append(filled_mean(0, LONG_WINDOW))
        j_hr = 2
    if hr_n is not None:
        cols.extend(_context(hr_n, means, j_hr, j_hr + 1))
        cols.append(filled_mean(j_hr, LONG_WINDOW))
        cols.append(filled_mean(j_hr + 2, LONG_WINDOW))
        cols.extend(filled_mean(j_hr + 2, w) for w in CONTEXT_WINDOWS)
    if count_n is not None and hr_n is not None:
        cols.extend(filled_mean(0, w) * filled_mean(j_hr, w) for w in PRODUCT_WINDOWS)
    time_h, cosine = time_features(n_epochs)
    tt = time_h / 8.0
    if n_epochs == 0:
        return np.zeros((0, len(cols) + 3))
    return np.column_stack([*cols, tt, tt**2, cosine])


@functools.lru_cache(maxsize=LONG_WINDOW // 2 + 1)
def _row_windows(last: int) -> tuple[npt.NDArray[np.int64], ...]:
    """The windows :func:`design_row` sums for its last epoch ``last``, as rows of its
    prefix sums over the trailing epochs (the last ``LONG_WINDOW // 2 + 1``; the same rows
    for every ``last`` from ``LONG_WINDOW // 2`` on, so longer nights ask for that one):
    the row after each window's end, the row of its start, and how many of its epochs lie
    before the night's first / after its last (``(m, 1)``; they take that epoch's value).

    The windows are, as (centre, length): every length at the last epoch, then the
    21-epoch means the shifted context reads in the past (at the first epoch when the
    night is shorter)."""
    first = max(0, last - LONG_WINDOW // 2)
    pairs = [(last, w) for w in _DESIGN_LENGTHS]
    pairs += [(max(last - sh, 0), 21) for sh in CONTEXT_SHIFTS]
    lo = np.array([c - w // 2 for c, w in pairs])
    hi = np.array([c + (w - w // 2 - 1) for c, w in pairs])
    rows = (np.minimum(hi, last) + 1 - first, np.maximum(lo, 0) - first,
            np.maximum(-lo, 0)[:, None], np.maximum(hi - last, 0)[:, None])
    for r in rows:
        r.setflags(write=False)
    return rows


def design_row(count_n: F64 | None, hr_n: F64 | None) -> F64:
    """The last row of :func:`design_matrix` over the night so far (same columns, same
    edge rules), from the trailing ``LONG_WINDOW // 2 + 1`` epochs and the night's ranks
    and means.

    The live stager needs only the newest epoch's row; the whole matrix costs some 300
    numpy calls whatever the night's length, this some 40. The values equal
    ``design_matrix(count_n, hr_n, n)[-1]`` up to rounding: a window's sum is taken here
    as a difference of prefix sums over the trailing epochs, there as a running sum
    from the night's first epoch.
    """
    series: list[F64] = []
    if count_n is not None:
        series += [count_n, count_n * count_n]
    if hr_n is not None:
        series += [hr_n, hr_n * hr_n, night_rank(hr_n)]
    if not series:
        raise ValueError("design_row needs the count or the heart-rate feature")
    x = np.stack(series, axis=1)
    n = x.shape[0]
    if n == 0:
        raise ValueError("design_row needs at least one epoch")
    ok = np.isfinite(x)
    xv = np.where(ok, x, 0.0)
    okf = ok.astype(np.float64)
    finite = ok.sum(axis=0)
    night_mean = np.where(finite > 0, xv.sum(axis=0) / np.maximum(finite, 1), np.nan)
    last = n - 1
    first = max(0, last - LONG_WINDOW // 2)  # the widest window reaches back this far
    both = np.concatenate((xv[first:], okf[first:]), axis=1)
    cum = np.concatenate((np.zeros((1, both.shape[1])), np.cumsum(both, axis=0)))
    end_row, start_row, before, after = _row_windows(min(last, LONG_WINDOW // 2))
    sums = (cum[end_row] - cum[start_row]
            + before * np.concatenate((xv[0], okf[0])) + after * np.concatenate((xv[-1],
                                                                                okf[-1])))
    k = x.shape[1]
    # a window without finite values (weight <= 0.5) is NaN: divide by at least 0.5 so
    # that no division warns (and no np.errstate is needed)
    means = np.where(sums[:, k:] > 0.5, sums[:, :k] / np.maximum(sums[:, k:], 0.5), np.nan)
    # window means with the night's mean where a window holds no finite value
    filled = np.where(np.isfinite(means), means, night_mean)
    row = _DESIGN_ROW  # the row of ``means`` of each window length

    j_hr = 2 if count_n is not None else 0
    js = np.array(([0] if count_n is not None else []) + ([j_hr] if hr_n is not None else []))
    # the context of every present feature at once (one column each; its square follows
    # it in ``x``), in _context's order after the epoch's own value
    n_win, n_std, n_shift = len(CONTEXT_WINDOWS), len(CONTEXT_STD_WINDOWS), len(CONTEXT_SHIFTS)
    ctx = np.empty((n_win + n_std + 2 * n_shift + 1, js.size))
    ctx[:n_win] = means[_CONTEXT_ROWS][:, js]
    low = means[_STD_ROWS][:, js]
    ctx[n_win:n_win + n_std] = np.sqrt(np.maximum(means[_STD_ROWS][:, js + 1] - low ** 2, 0.0))
    shifted = n_win + n_std
    ctx[shifted:-1:2] = means[len(_DESIGN_LENGTHS):][:, js]  # the 21-epoch means in the past;
    ctx[shifted + 1:-1:2] = means[row[21], js]  # the future side is past the last epoch
    tail = np.where(ok[max(0, last - 10):][:, js], x[max(0, last - 10):][:, js], -np.inf)
    tail_max = tail.max(axis=0)
    ctx[-1] = np.where(np.isfinite(tail_max), tail_max, np.nan)
    own = x[last, js]
    ctx = np.where(np.isfinite(ctx), ctx, night_mean[js])

    cols: list[float] = []
    if count_n is not None:
        cols += [float(own[0]), *ctx[:, 0].tolist(), float(filled[row[LONG_WINDOW], 0])]
    if hr_n is not None:
        cols += [float(own[-1]), *ctx[:, -1].tolist()]
        cols += [float(filled[row[LONG_WINDOW], j_hr]), float(filled[row[LONG_WINDOW], j_hr + 2])]
        cols += filled[_CONTEXT_ROWS, j_hr + 2].tolist()
    if count_n is not None and hr_n is not None:
        cols += (filled[_PRODUCT_ROWS, 0] * filled[_PRODUCT_ROWS, j_hr]).tolist()
    time_h, cosine = time_features(n, first=last)
    tt = time_h[0] / 8.0
    return np.array([*cols, tt, tt**2, cosine[0]], dtype=np.float64)
