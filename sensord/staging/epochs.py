"""30-s epoch grid, sample-to-epoch assignment, per-epoch aggregation and coverage.

Epochs are aligned to multiples of 30 s since the Unix epoch so that streams of several
devices line up. Pure numpy, vectorised (``bincount``), no loop per sample or epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError
from sensord.model import EPOCH_NS, EPOCH_S

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class EpochGrid:
    """``n`` consecutive epochs starting at ``start_ns`` (a multiple of 30 s)."""

    start_ns: int
    n: int

    @property
    def end_ns(self) -> int:
        """End of the last epoch (exclusive)."""
        return self.start_ns + self.n * EPOCH_NS

    @property
    def t_ns(self) -> I64:
        """Start time of each epoch."""
        return self.start_ns + np.arange(self.n, dtype=np.int64) * EPOCH_NS


def epoch_grid(start_ns: int, end_ns: int) -> EpochGrid:
    """Epochs covering ``[start_ns, end_ns)``: the first contains ``start_ns``, the last
    contains ``end_ns - 1``. An empty or inverted span gives zero epochs."""
    start_ns, end_ns = int(start_ns), int(end_ns)
    if end_ns <= start_ns:
        return EpochGrid(start_ns - start_ns % EPOCH_NS, 0)
    first = start_ns - start_ns % EPOCH_NS
    last = (end_ns - 1) - (end_ns - 1) % EPOCH_NS
    return EpochGrid(first, (last - first) // EPOCH_NS + 1)


def epoch_index(grid: EpochGrid, t_ns: I64) -> I64:
    """Epoch index of each time, ``-1`` outside the grid."""
    t = np.asarray(t_ns, dtype=np.int64)
    idx = (t - grid.start_ns) // EPOCH_NS
    return np.where((t >= grid.start_ns) & (idx < grid.n), idx, -1).astype(np.int64)


def clean_series(t_ns: I64, values: F64) -> tuple[I64, F64, int]:
    """Sort by time, drop samples whose value is not finite and duplicated timestamps.

    Returns the cleaned ``(t_ns, values, n_dropped)``. ``values`` may be 2-D (rows are
    samples); a row is dropped if any of its entries is not finite. For a duplicated
    timestamp the first sample in arrival order is kept.
    """
    t = np.asarray(t_ns, dtype=np.int64).reshape(-1)
    v = np.asarray(values, dtype=np.float64)
    if v.shape[:1] != t.shape:
        raise StagingError(f"times ({t.size}) and values ({v.shape[0]}) differ in length")
    finite: npt.NDArray[np.bool_] = np.isfinite(v) if v.ndim == 1 else np.ones(t.size, bool)
    if v.ndim > 1:
        for col in np.ndindex(v.shape[1:]):  # column by column: faster than a row-wise all
            finite &= np.isfinite(v[(slice(None), *col)])
    if t.size < 2 or bool((t[1:] > t[:-1]).all()):  # already strictly increasing
        if finite.all():
            return t, v, 0
        return t[finite], v[finite], int(t.size - finite.sum())
    order = np.argsort(t, kind="stable")
    order = order[finite[order]]
    ts = t[order]
    keep = np.ones(ts.size, dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]
    order = order[keep]
    return t[order], v[order], int(t.size - order.size)


def epoch_mean(grid: EpochGrid, t_ns: I64, values: F64) -> F64:
    """Mean of the samples in each epoch (``NaN`` where an epoch has none)."""
    idx = epoch_index(grid, t_ns)
    ok = idx >= 0
    n = np.bincount(idx[ok], minlength=grid.n)[: grid.n]
    s = np.bincount(idx[ok], weights=np.asarray(values, dtype=np.float64)[ok], minlength=grid.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s[: grid.n] / np.maximum(n, 1), np.nan)


def second_coverage(grid: EpochGrid, t_ns: I64) -> F64:
    """Fraction (0..1) of the 30 one-second slots of each epoch holding at least one sample.

    Works for any stream rate of 1 Hz or more (heart rate, acceleration, 1-s counts);
    for beats it measures how many seconds saw a beat end.
    """
    t = np.asarray(t_ns, dtype=np.int64).reshape(-1)
    n_s = grid.n * EPOCH_S
    if t.size > n_s and bool((t[1:] >= t[:-1]).all()):
        # more samples than seconds, in time order: a second holds a sample where the
        # samples before its end outnumber those before its start (the bench night's
        # 50-Hz acceleration: 7 -> 2 ms)
        edges = grid.start_ns + np.arange(n_s + 1, dtype=np.int64) * SECOND_NS
        seen = np.diff(np.searchsorted(t, edges)) > 0
    else:
        seen = np.zeros(n_s, dtype=bool)  # the grid's seconds that hold a sample
        block = 1 << 16  # samples at a time: no night-long temporaries for 50-Hz streams
        for lo in range(0, t.size, block):
            part = t[lo : lo + block]
            sec = (part[part >= grid.start_ns] - grid.start_ns) // SECOND_NS
            seen[sec[sec < n_s]] = True
    return seen.reshape(grid.n, EPOCH_S).sum(axis=1) / EPOCH_S


def interval_coverage(grid: EpochGrid, t_ns: I64, dur_ns: I64) -> F64:
    """Fraction (0..1) of each epoch covered by intervals ``[t_ns - dur_ns, t_ns)``.

    Used for beat-to-beat intervals (each RR interval covers the time before the beat
    that ends it) and for count bins (pass ``t_ns + bin`` as the end). Overlaps are not
    merged, so the result is clipped to 1.
    """
    if grid.n == 0:
        return np.zeros(0)
    # work relative to the grid start so float64 prefix sums stay exact to microseconds
    end = np.asarray(t_ns, dtype=np.int64) - grid.start_ns
    start = end - np.asarray(dur_ns, dtype=np.int64)
    # accumulate covered time per epoch: split every interval at epoch boundaries with a
    # cumulative "coverage function" evaluated at the boundaries
    span = grid.n * EPOCH_NS
    edges = np.arange(grid.n + 1, dtype=np.int64) * EPOCH_NS
    s_sorted = np.sort(np.minimum(np.maximum(start, 0), span))  # np.clip's wrapper costs more
    e_sorted = np.sort(np.minimum(np.maximum(end, 0), span))
    # covered(x) = sum over intervals of clip(x - start, 0, dur): evaluate via prefix sums
    cs = np.concatenate(([0], np.cumsum(s_sorted, dtype=np.float64)))
    ce = np.concatenate(([0], np.cumsum(e_sorted, dtype=np.float64)))
    ks = np.searchsorted(s_sorted, edges, side="right")
    ke = np.searchsorted(e_sorted, edges, side="right")
    covered = (ks * edges.astype(np.float64) - cs[ks]) - (ke * edges.astype(np.float64) - ce[ke])
    per_epoch = np.diff(covered) / EPOCH_NS
    return np.clip(per_epoch, 0.0, 1.0)
