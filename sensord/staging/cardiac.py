"""Cardiac features: heart rate, RR artefact handling and 5-min HRV per epoch.

RR artefacts (flags are bit masks per interval, see ``RR_*``):

* out of range: an interval outside 300-2000 ms (30-200 bpm) is not a heartbeat;
  longer ones are *dropouts* (the strap lost contact; MMASH holds a 27.8 s one) and
  break the NN series (no successive difference spans them);
* missed beats: an interval within 15 % of 2x or 3x the local median (median of the 11
  surrounding intervals) is split into 2 or 3 equal intervals;
* ectopic / noisy beats: an interval deviating more than 20 % from the local median
  (Malik's criterion; Kleiger et al. 1987) is flagged and excluded.

Excluded intervals are not interpolated for time-domain HRV (successive differences use
only pairs of consecutive accepted intervals); for spectra the accepted NN series is
linearly interpolated. Flags are counted per epoch.

HRV is computed in a 5-min window centred on each 30-s epoch (Task Force of ESC/NASPE
1996, Circulation 93:1043):

* RMSSD: root mean square of successive differences of accepted consecutive NN intervals;
* SDNN: standard deviation (ddof 0) of accepted NN intervals;
* pNN50: percentage of successive differences > 50 ms;
* LF (0.04-0.15 Hz), HF (0.15-0.40 Hz) power in ms^2 and LF/HF. **Pinned method**: NN
  series linearly interpolated at 4 Hz on the beat times, the 1200-sample (300 s)
  window linearly detrended, Hann-windowed periodogram (one-sided, density scaled as
  ``scipy.signal.periodogram(..., window="hann", detrend="linear")``), power integrated
  with the rectangle rule over the band's bins.

A window is valid only if accepted NN intervals cover at least 80 % of it (240 s);
otherwise all HRV values of that epoch are ``NaN``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.model import EPOCH_NS, BeatStream
from sensord.staging import filters
from sensord.staging.epochs import EpochGrid, epoch_index

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

RR_MIN_MS = 300.0
RR_MAX_MS = 2000.0
RR_OUT_OF_RANGE = 1
RR_DROPOUT = 2
RR_MISSED = 4
RR_ECTOPIC = 8

HRV_WINDOW_S = 300
HRV_FS_HZ = 4.0
HRV_MIN_COVER = 0.8
LF_BAND = (0.04, 0.15)
HF_BAND = (0.15, 0.40)


@dataclass(frozen=True, slots=True)
class NNSeries:
    """Corrected beat series.

    ``t_ns`` beat time ending each interval, ``nn_ms`` interval, ``ok`` accepted for HRV,
    ``starts_run`` True where the previous interval is not its accepted neighbour (so no
    successive difference is formed across it). ``flags`` per *input* interval.
    """

    t_ns: I64
    nn_ms: F64
    ok: npt.NDArray[np.bool_]
    starts_run: npt.NDArray[np.bool_]
    flags: npt.NDArray[np.int64]
    input_t_ns: I64


def correct_rr(beats: BeatStream) -> NNSeries:
    """Detect and correct RR artefacts (see module docstring). Input must be sorted and
    finite (``epochs.clean_series``)."""
    t = np.asarray(beats.t_ns, dtype=np.int64)
    rr = np.asarray(beats.rr_ms, dtype=np.float64)
    flags = np.zeros(rr.size, dtype=np.int64)
    flags[rr > RR_MAX_MS] |= RR_DROPOUT
    flags[(rr < RR_MIN_MS) | (rr > RR_MAX_MS)] |= RR_OUT_OF_RANGE
    in_range = flags == 0
    if rr.size == 0:
        z = np.zeros(0, dtype=bool)
        return NNSeries(t, rr, z, z, flags, t)
    # local median of in-range intervals (NaN elsewhere), 11 intervals wide
    vals = np.where(in_range, rr, np.nan)
    med = _nanmedian_filter(vals, 11)
    if not np.isfinite(med).all():  # windows without an in-range interval: the series'
        med = np.where(np.isfinite(med), med, np.nanmedian(vals) if in_range.any() else np.nan)
    ratio = rr / med
    k = np.rint(ratio)
    missed = in_range & (k >= 2) & (k <= 3) & (np.abs(ratio - k) <= 0.15 * k)
    flags[missed] |= RR_MISSED
    ectopic = in_range & ~missed & (np.abs(ratio - 1.0) > 0.20)
    flags[ectopic] |= RR_ECTOPIC
    # split missed-beat intervals into k equal ones (beats inserted before the real beat)
    if missed.any():
        reps = np.where(missed, k, 1).astype(np.int64)
        idx = np.repeat(np.arange(rr.size), reps)
        within = np.arange(idx.size) - np.repeat(np.cumsum(reps) - reps, reps)  # 0..k-1
        part = rr[idx] / reps[idx]
        t_out = t[idx] - np.rint((reps[idx] - 1 - within) * part * 1e6).astype(np.int64)
        kept_flags = flags[idx]
    else:  # nothing to split (most windows): the same values without the index arithmetic
        part, t_out, kept_flags = rr, t, flags
    ok = (kept_flags & (RR_OUT_OF_RANGE | RR_ECTOPIC)) == 0
    starts = np.ones(ok.size, dtype=bool)
    starts[1:] = ~(ok[:-1] & ok[1:])
    # a beat that does not follow its predecessor in time (lost notifications) also breaks
    gap = np.zeros(ok.size, dtype=bool)
    gap[1:] = (t_out[1:] - t_out[:-1]) > (part[1:] * 1e6 * 1.5 + 5e8)
    starts |= gap
    return NNSeries(t_out, part, ok, starts, flags, t)


def _nanmedian_filter(x: F64, size: int) -> F64:
    """Centred running median ignoring NaN (windows of all-NaN give NaN); the values of
    ``np.nanmedian`` over each window, from one sort of all windows (NaN sorts last)
    instead of its masked-array path (about ten times slower)."""
    if x.size == 0:
        return x.copy()
    pad = size // 2
    padded = np.concatenate((np.full(pad, np.nan), x, np.full(pad, np.nan)))
    win = np.sort(filters.windows(padded, size), axis=1)
    # finite values per window: a difference of running counts (not a pass over windows)
    seen = np.concatenate(([0], np.cumsum(~np.isnan(padded))))
    valid = seen[size:] - seen[:-size]
    rows = np.arange(x.size)
    lo = win[rows, np.maximum(valid - 1, 0) // 2]
    hi = win[rows, valid // 2 - (valid == 0)]
    return np.where(valid > 0, (lo + hi) / 2.0, np.nan)


def flags_per_epoch(grid: EpochGrid, nn: NNSeries) -> I64:
    """Number of flagged input intervals per epoch."""
    idx = epoch_index(grid, nn.input_t_ns)
    sel = (idx >= 0) & (nn.flags != 0)
    return np.bincount(idx[sel], minlength=grid.n)[: grid.n].astype(np.int64)


def hr_from_nn(grid: EpochGrid, nn: NNSeries) -> F64:
    """Mean heart rate per epoch from accepted intervals: ``60000 / mean(NN)`` (bpm)."""
    idx = epoch_index(grid, nn.t_ns)
    sel = (idx >= 0) & nn.ok
    n = np.bincount(idx[sel], minlength=grid.n)[: grid.n]
    s = np.bincount(idx[sel], weights=nn.nn_ms[sel], minlength=grid.n)[: grid.n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 60000.0 / (s / np.maximum(n, 1)), np.nan)


def hrv_per_epoch(grid: EpochGrid, nn: NNSeries) -> dict[str, F64]:
    """RMSSD, SDNN, pNN50, LF, HF and LF/HF per epoch (5-min centred windows).

    Returns a dict of arrays keyed ``rmssd_ms``, ``sdnn_ms``, ``pnn50_pct``, ``lf_ms2``,
    ``hf_ms2``, ``lf_hf`` and ``hrv_cover`` (accepted-NN coverage of the window, 0..1).
    """
    n_ep = grid.n
    nan = np.full(n_ep, np.nan)
    keys = ("rmssd_ms", "sdnn_ms", "pnn50_pct", "lf_ms2", "hf_ms2", "lf_hf")
    if n_ep == 0 or nn.t_ns.size < 3:
        out = {k: nan.copy() for k in keys}
        out["hrv_cover"] = np.zeros(n_ep)
        return out
    mid = grid.t_ns + EPOCH_NS // 2
    w0 = mid - HRV_WINDOW_S * 500_000_000
    w1 = mid + HRV_WINDOW_S * 500_000_000
    t = nn.t_ns
    lo = np.searchsorted(t, w0, side="left")
    hi = np.searchsorted(t, w1, side="left")

    def csum(x: F64) -> F64:
        return np.concatenate(([0.0], np.cumsum(x)))

    x = np.where(nn.ok, nn.nn_ms, 0.0)
    c_x = csum(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        cover = (c_x[hi] - c_x[lo]) / (HRV_WINDOW_S * 1000.0)
    valid = cover >= HRV_MIN_COVER
    hrv_cover = np.minimum(np.maximum(np.where(np.isnan(cover), 0.0, cover), 0.0), 1.0)
    if not valid.any():  # no window is reported: skip the rest (the live stager's epochs)
        out = {k: nan.copy() for k in keys}
        out["hrv_cover"] = hrv_cover
        return out
    okf = nn.ok.astype(np.float64)
    c_n, c_x2 = csum(okf), csum(x * x)
    cnt = c_n[hi] - c_n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c_x[hi] - c_x[lo]) / cnt
        var = np.maximum((c_x2[hi] - c_x2[lo]) / cnt - mean**2, 0.0)
        # successive differences: pair i = (i-1, i), valid if both ok and not a run start
        pair_ok = np.zeros(t.size)
        pair_ok[1:] = (nn.ok[1:] & nn.ok[:-1] & ~nn.starts_run[1:]).astype(np.float64)
        d = np.zeros(t.size)
        d[1:] = np.diff(nn.nn_ms)
        d = np.where(pair_ok > 0, d, 0.0)
        c_p, c_d2, c_50 = csum(pair_ok), csum(d * d), csum((np.abs(d) > 50.0) * pair_ok)
        # a pair belongs to the window if its second beat does and its first beat too
        lo1 = np.minimum(lo + 1, t.size)
        npair = c_p[hi] - c_p[lo1]
        rmssd = np.sqrt((c_d2[hi] - c_d2[lo1]) / npair)
        pnn50 = 100.0 * (c_50[hi] - c_50[lo1]) / npair
    lf, hf = _band_powers(grid, nn, mid)
    with np.errstate(invalid="ignore", divide="ignore"):
        lf_hf = lf / hf
    return {
        "rmssd_ms": np.where(valid & (npair > 1), rmssd, np.nan),
        "sdnn_ms": np.where(valid, np.sqrt(var), np.nan),
        "pnn50_pct": np.where(valid & (npair > 1), pnn50, np.nan),
        "lf_ms2": np.where(valid, lf, np.nan),
        "hf_ms2": np.where(valid, hf, np.nan),
        "lf_hf": np.where(valid, lf_hf, np.nan),
        "hrv_cover": hrv_cover,
    }


def _band_powers(grid: EpochGrid, nn: NNSeries, mid_ns: I64) -> tuple[F64, F64]:
    """LF and HF power per epoch window by the pinned method (module docstring)."""
    ok = nn.ok
    tb = nn.t_ns[ok]
    if tb.size < 3:
        nan = np.full(grid.n, np.nan)
        return nan, nan.copy()
    step_ns = int(1e9 / HRV_FS_HZ)
    t0 = grid.start_ns - HRV_WINDOW_S * 500_000_000
    n_s = int((grid.end_ns + HRV_WINDOW_S * 500_000_000 - t0) // step_ns) + 1
    ts = t0 + np.arange(n_s, dtype=np.int64) * step_ns
    series = np.interp((ts - t0).astype(np.float64), (tb - t0).astype(np.float64), nn.nn_ms[ok])
    win_n = int(HRV_WINDOW_S * HRV_FS_HZ)
    first = ((mid_ns - HRV_WINDOW_S * 500_000_000) - t0) // step_ns
    windows = filters.windows(series, win_n)
    first = first.astype(np.int64)
    lf = np.empty(first.size)
    hf = np.empty(first.size)
    # each epoch's spectrum is its own row: a block of epochs at a time gives the same
    # values and keeps a night's spectra (some 35 MB of intermediates) out of memory
    for lo in range(0, first.size, _SPECTRA_BLOCK):
        hi = min(first.size, lo + _SPECTRA_BLOCK)
        freqs, pxx = _periodogram(windows[first[lo:hi]])
        df = freqs[1] - freqs[0]
        lf[lo:hi] = _band_sum(pxx, (freqs >= LF_BAND[0]) & (freqs < LF_BAND[1])) * df
        hf[lo:hi] = _band_sum(pxx, (freqs >= HF_BAND[0]) & (freqs < HF_BAND[1])) * df
    return lf, hf


def _band_sum(pxx: F64, band: npt.NDArray[np.bool_]) -> F64:
    """Each row's sum over the band's bins, added in frequency order whatever the number of
    rows (``.sum(axis=1)`` adds pairwise on one row but in order on several)."""
    return np.cumsum(pxx[:, band], axis=1)[:, -1]


_SPECTRA_BLOCK = 128
"""Epoch windows whose spectra are computed together (:func:`_band_powers`)."""


@functools.lru_cache(maxsize=4)
def _hann(n: int) -> F64:
    """The periodic Hann window of ``scipy.signal.periodogram`` (made once per length)."""
    win = filters.periodic_hann(n)
    win.setflags(write=False)
    return win


def _periodogram(segs: F64) -> tuple[F64, F64]:
    """One-sided Hann-windowed periodogram (density, ms^2/Hz) of each linearly detrended
    row, at ``HRV_FS_HZ``; equal to ``scipy.signal.periodogram(segs, fs, window="hann",
    detrend="linear", axis=1)`` (checked in the tests) without its per-row least squares."""
    n = segs.shape[1]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    # (not ``segs @ t``: BLAS adds up a row in an order that depends on how many rows it
    # is given, and an epoch's value must not depend on the epochs computed with it)
    slope = (segs * t).sum(axis=1) / (t @ t)
    resid = segs - segs.mean(axis=1, keepdims=True) - slope[:, None] * t[None, :]
    win = _hann(n)
    spec = np.abs(np.fft.rfft(resid * win, axis=1)) ** 2 / (HRV_FS_HZ * (win * win).sum())
    if n % 2 == 0:
        spec[:, 1:-1] *= 2.0
    else:
        spec[:, 1:] *= 2.0
    return np.asarray(np.fft.rfftfreq(n, 1.0 / HRV_FS_HZ), dtype=np.float64), spec


def hr_1hz(t_ns: I64, hr_bpm: F64, start_ns: int, n_s: int, *, max_gap_s: float = 10.0) -> F64:
    """Heart rate on a 1-Hz grid from ``start_ns`` (linear interpolation; ``NaN`` in gaps
    longer than ``max_gap_s`` and outside the samples)."""
    grid = start_ns + np.arange(n_s, dtype=np.int64) * 1_000_000_000
    return _interp_gappy(grid, t_ns, hr_bpm, max_gap_s)


def _interp_gappy(grid: I64, t_ns: I64, v: F64, max_gap_s: float) -> F64:
    t = np.asarray(t_ns, dtype=np.int64)
    if t.size == 0:
        return np.full(grid.size, np.nan)
    ref = grid[0] if grid.size else 0
    out = np.interp((grid - ref).astype(np.float64), (t - ref).astype(np.float64), v)
    k = np.searchsorted(t, grid, side="right")
    prev_t = t[np.maximum(k - 1, 0)]  # k is 0..t.size: only these ends need clipping
    next_t = t[np.minimum(k, t.size - 1)]
    inside = (k > 0) & (k < t.size) | (grid == t[-1])
    gap = (next_t - prev_t) > max_gap_s * 1e9
    out[~inside | (gap & (k < t.size))] = np.nan
    return out

