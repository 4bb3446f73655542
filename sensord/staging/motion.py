"""Motion features: ActiGraph activity counts, ENMO and the van Hees arm angle.

Activity counts follow the published ActiGraph algorithm (Neishabouri et al. 2022, Sci Rep
12:16746, "Quantification of acceleration as activity counts in ActiGraph wearables"),
whose open implementation is the ``agcounts`` package; for the sampling rates that
algorithm defines (30-100 Hz in steps of 10) the integers here equal ``agcounts``'s,
which the tests check. Filter coefficients are the published ActiGraph ones.

ENMO: Euclidean norm minus one g, negatives set to 0 (van Hees et al. 2013, PLoS ONE
8:e61691). Angle: ``atan(z / sqrt(x^2 + y^2))`` in degrees on 5-s rolling medians of the
raw signal (van Hees et al. 2015, PLoS ONE 10:e0142533).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError
from sensord.model import AccStream, CountStream
from sensord.staging import filters

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# ActiGraph band-pass filter (Neishabouri et al. 2022, supplementary; 30 Hz domain).
_BPF_B = np.array(
    [
        -0.009341062898525,
        -0.025470289659360,
        -0.004235264826105,
        0.044152415456420,
        0.036493718347760,
        -0.011893961934740,
        -0.022917390623150,
        -0.006788163862310,
        0.000000000000000,
    ]
)
_BPF_A = np.array(
    [
        1.00000000000000000000,
        -3.63367395910957000000,
        5.03689812757486000000,
        -3.09612247819666000000,
        0.50620507633883000000,
        0.32421701566682000000,
        -0.15685485875559000000,
        0.01949130205890000000,
        0.00000000000000000000,
    ]
)
_GAIN = (3.0 / 4096.0) / (2.6 / 256.0) * 237.5
_BPF = filters.IirFilter(_BPF_B, _BPF_A)
# Rational resampling factors (up, down) from each supported rate to 30 Hz.
_FACTORS = {30: (1, 1), 40: (3, 4), 50: (3, 5), 60: (1, 2), 70: (3, 7), 80: (3, 8), 90: (1, 3),
            100: (3, 10)}
SUPPORTED_HZ = tuple(sorted(_FACTORS))
_CHUNK = 1 << 15
"""Grid samples processed at a time (about 11 min at 50 Hz): a whole night's filter
intermediates would cost the scoring worker some 150 MB, chunks of 65,536 points 20 MB
(worker peak on the bench night 86.7 MB with 65,536, 80.7 with 32,768, 79.6 with 16,384);
chunks give the same counts (checked against 65,536-point chunks: the re-score of 18
logs, simulated, ``tests/sessions``, the demo and the 8-h bench night, byte for byte, and
the counts of 45 synthetic streams at 10-200 Hz)."""


class _LowPass(NamedTuple):
    """The rate converter's first-order low-pass at one zero-stuffing factor ``up``
    (:meth:`_GridCounter._to_30hz`), computed once."""

    drive_scale: float
    """``a * up``: the drive of a stuffed sample per g."""
    p_powers: F64
    """``p^(r+1)`` for the offsets ``r`` in a block."""
    gain: F64
    """``g_r`` for the offsets ``r`` in a block."""
    q: float
    """``p^up``: the recursion's factor from block to block."""
    block_filter: filters.IirFilter
    """``E[m] = q E[m-1] + drive``."""


@functools.cache
def _low_pass(up: int) -> _LowPass:
    a_fp = np.pi / (np.pi + 2 * up)
    p = -(np.pi - 2 * up) / (np.pi + 2 * up)
    gain = np.array([1.0] + [p**r + p ** (r - 1) for r in range(1, up)])
    q = p**up
    p_powers = np.asarray(p ** np.arange(1, up + 1), dtype=np.float64)
    return _LowPass(a_fp * up, p_powers, gain, q, filters.IirFilter([1.0], [1.0, -q]))


class _GridCounter:
    """ActiGraph counts of uniformly sampled acceleration fed in pieces of any length.

    Holds the state that makes pieces give the counts of the whole: the rate converter's
    phase and low-pass state, the band-pass filter state and the unfinished second. Both
    filters are linear recursions; a piece started from the state the previous one left
    gives the values of one call over all up to rounding (about 1e-12 of the signal for
    the band-pass, :func:`sensord.staging.filters.iir_filter`), far from moving a count.
    """

    def __init__(self, fs: int) -> None:
        self.fs = fs
        self._in = 0  # grid samples given to the rate conversion so far
        self._block_end = np.zeros(3)  # low-pass output at the end of the last input block
        self._bpf_zi: F64 | None = None
        self._mag = np.zeros((3, 0))  # rectified 30-Hz samples of the unfinished second

    def _to_30hz(self, x: F64) -> F64:
        """ActiGraph's rate conversion: zero-stuffing, a first-order low-pass, decimation."""
        up, down = _FACTORS[self.fs]
        lo = self._in
        self._in += x.shape[1]
        if self.fs == 30:
            return np.round(x, 3)
        if self.fs in (60, 90):  # integer decimation, no filter
            return np.asarray(np.round(x[:, (-lo) % down :: down], 3), dtype=np.float64)
        filt = self._low_passed(x, lo, up, down)
        return np.round(filt, 3, out=filt)

    def _low_passed(self, x: F64, lo: int, up: int, down: int) -> F64:
        """The kept samples of the zero-stuffed, low-passed grid samples ``x`` (the first
        the ``lo``-th), before rounding; carries the low-pass state."""
        # Zero-stuff by ``up`` (3) and low-pass with y[i] = a*up*(u[i] + u[i-1]) + p*y[i-1],
        # p = -b. The stuffed signal u is x[m] at offset 0 of block m and zero elsewhere, so
        # the drive is c = a*up*x[m] at offsets 0 and 1 and, with E[m] the output at the
        # block's last offset, offset r of block m is y = p^(r+1) E[m-1] + c*g_r with
        # g_0 = 1, g_r = p^r + p^(r-1): E itself is a first-order recursion at the input
        # rate, E[m] = p^up E[m-1] + c*g_(up-1). Only every ``down``-th stuffed sample is
        # kept (counted from the first piece), so only those are formed.
        low_pass = _low_pass(up)
        drive = low_pass.drive_scale * x
        ends, _ = low_pass.block_filter(low_pass.gain[-1] * drive,
                                        low_pass.q * self._block_end[:, None])
        prev = np.concatenate((self._block_end[:, None], ends[:, :-1]), axis=1)
        self._block_end = ends[:, -1].copy()
        first = (-lo * up) % down  # stuffed index of the first sample kept
        n_kept = len(range(first, x.shape[1] * up, down))
        # every ``period``-th kept sample has the same offset in its block, the blocks
        # ``stride`` apart: one strided product per offset instead of gathered indices
        period = up // math.gcd(up, down)
        stride = period * down // up
        filt = np.empty((x.shape[0], n_kept))
        for phase in range(min(period, n_kept)):
            block, offset = divmod(first + phase * down, up)
            count = len(range(phase, n_kept, period))
            cols = slice(block, block + stride * (count - 1) + 1, stride)
            kept = filt[:, phase::period]
            np.multiply(low_pass.p_powers[offset], prev[:, cols], out=kept)
            kept += low_pass.gain[offset] * drive[:, cols]
        return filt

    def seconds(self, grid: F64) -> I64:
        """Per-axis counts ``(n_sec, 3)`` of the 1-s bins that ``grid`` (``(3, m)`` samples
        in g) completes."""
        if grid.shape[1] == 0:
            return np.zeros((0, 3), dtype=np.int64)
        x30 = self._to_30hz(grid)
        if x30.shape[1] == 0:
            return np.zeros((0, 3), dtype=np.int64)
        if self._bpf_zi is None:  # the filter starts at rest on the first sample
            self._bpf_zi = filters.iir_steady_state(_BPF_B, _BPF_A)[None, :] * x30[:, :1]
        bpf, self._bpf_zi = _BPF(x30, self._bpf_zi)
        mag = np.abs(_GAIN * bpf)
        mag[mag < 4] = 0
        mag = np.concatenate((self._mag, np.floor(np.minimum(mag, 128))), axis=1)
        n_sec = mag.shape[1] // 30
        self._mag = mag[:, n_sec * 30 :]
        done = mag[:, : n_sec * 30]  # each tenth's 3 samples added as sum(axis=2) adds them,
        # (m0 + m1) + m2, in two whole-array additions (a reduction over an axis of 3 is slow)
        tenth = np.floor((done[:, 0::3] + done[:, 1::3] + done[:, 2::3]) / 3)
        return tenth.reshape(3, n_sec, 10).sum(axis=2).T.astype(np.int64)


def activity_counts(acc_g: F64, fs_hz: int, *, epoch_s: int = 1) -> I64:
    """ActiGraph activity counts per axis.

    Parameters
    ----------
    acc_g
        ``(n, 3)`` acceleration in g, uniformly sampled.
    fs_hz
        Sampling rate; one of :data:`SUPPORTED_HZ` (others: use :func:`counts_from_stream`).
    epoch_s
        Count epoch length in seconds; trailing samples of an incomplete epoch are dropped.

    Returns
    -------
    ndarray of int64, shape ``(n_epochs, 3)``
    """
    acc = np.asarray(acc_g, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3:
        raise StagingError(f"acc_g must have shape (n, 3), got {acc.shape}")
    if fs_hz not in _FACTORS:
        raise StagingError(f"activity_counts needs a rate in {SUPPORTED_HZ} Hz, got {fs_hz}")
    if not np.isfinite(acc).all():
        raise StagingError("acc_g contains NaN or inf; clean it first (epochs.clean_series)")
    if acc.shape[0] == 0:
        return np.zeros((0, 3), dtype=np.int64)
    counter = _GridCounter(fs_hz)
    x = acc.T
    per_s = np.concatenate([counter.seconds(x[:, lo : lo + _CHUNK])
                            for lo in range(0, x.shape[1], _CHUNK)])
    n_ep = per_s.shape[0] // epoch_s
    return per_s[: n_ep * epoch_s].reshape(n_ep, epoch_s, 3).sum(axis=1)


def count_rate(fs_hz: float) -> int:
    """The supported rate counts are computed at for a stream sampled at ``fs_hz``: the
    nearest of :data:`SUPPORTED_HZ`."""
    return min(SUPPORTED_HZ, key=lambda r: abs(r - fs_hz))


_SPACING_CAP_NS = int(np.iinfo(np.int32).max)


def nominal_rate(t_ns: I64) -> float:
    """Sampling rate (Hz) from the median of the positive sample spacings; 0 if it cannot
    be told.

    The spacings are held as int32 where they are all positive: half the memory of a
    50-Hz night's int64 differences (the scoring worker's peak is where it takes the
    night's rate, 11.5 -> 5.8 MB on top of what it holds then), computed in blocks. A
    spacing of 2.1 s or more is held as ``2**31 - 1``, which leaves the median where it is
    unless a middle spacing is such a one; then (the median is more than half of it), or
    where a spacing is not positive, the int64 spacings are used.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    n = t.size - 1
    if n < 1:
        return 0.0
    spacing = np.empty(n, dtype=np.int32)
    block = 1 << 16
    for lo in range(0, n, block):
        part = np.diff(t[lo : lo + block + 1])
        if not (part > 0).all():
            return _nominal_rate_int64(t)
        spacing[lo : lo + part.size] = np.minimum(part, _SPACING_CAP_NS)
    median = np.median(spacing, overwrite_input=True)  # the mean of two ints in float64
    if 2 * median > _SPACING_CAP_NS:
        return _nominal_rate_int64(t)
    return float(1e9 / median)


def _nominal_rate_int64(t: I64) -> float:
    """:func:`nominal_rate` from int64 spacings, the non-positive ones left out."""
    d = np.diff(t)
    d = d[d > 0]
    # partitioned in place: no second night-long copy (the same median)
    return float(1e9 / np.median(d, overwrite_input=True)) if d.size else 0.0


def counts_from_stream(acc: AccStream, *, max_gap_s: float = 1.0) -> CountStream:
    """1-s vector-magnitude ActiGraph counts from a timestamped acceleration stream.

    The stream is split at gaps longer than ``max_gap_s``; a segment whose samples already
    sit on the grid of the nearest supported rate (within 5 % of a sample period) is
    counted as it is, any other is first resampled onto that grid by linear interpolation.
    Count bins start at each segment's first sample plus whole seconds. Samples must be
    clean (sorted, finite). The same counts, fed in pieces: :class:`SegmentCounter`.
    """
    t = np.asarray(acc.t_ns, dtype=np.int64)
    a = np.asarray(acc.acc_g, dtype=np.float64)
    fs_est = nominal_rate(t)
    if fs_est <= 0:
        return _count_stream([], [])
    counter = SegmentCounter(fs_est, max_gap_s=max_gap_s)
    for lo in range(0, t.size, _CHUNK):  # bounded intermediates, the same counts
        counter.feed(t[lo : lo + _CHUNK], a[lo : lo + _CHUNK])
    return counter.close()


class _ChunkedGrid:
    """Grid samples of one segment handed to a :class:`_GridCounter` in the chunks of
    :data:`_CHUNK` points that start at the segment's first point (the pieces they are
    produced in do not matter: the filters see the same blocks, so the same rounding).

    ``by_sample`` keeps pieces as ``(m, 3)`` rows and hands their transpose over (the
    layout of a segment's own samples), else as ``(3, m)`` rows (interpolated ones).
    """

    def __init__(self, fs: int, *, by_sample: bool) -> None:
        self.counter = _GridCounter(fs)
        self.by_sample = by_sample
        self.points = 0  # grid points produced (given to push) so far
        self._buf: list[F64] = []
        self._n_buf = 0
        self._secs: list[I64] = []

    def push(self, grid: F64) -> None:
        """Add grid points (``(m, 3)`` if ``by_sample``, else ``(3, m)``)."""
        m = grid.shape[0] if self.by_sample else grid.shape[1]
        if m == 0:
            return
        self.points += m
        self._buf.append(grid)
        self._n_buf += m
        while self._n_buf >= _CHUNK:  # each chunk joined alone (no larger temporary)
            take: list[F64] = []
            need = _CHUNK
            while need:
                piece = self._buf[0]
                size = piece.shape[0] if self.by_sample else piece.shape[1]
                if size <= need:
                    take.append(self._buf.pop(0))
                    need -= size
                elif self.by_sample:
                    take.append(piece[:need])
                    self._buf[0], need = piece[need:], 0
                else:
                    take.append(piece[:, :need])
                    self._buf[0], need = piece[:, need:], 0
            self._n_buf -= _CHUNK
            self._count(np.concatenate(take, axis=0 if self.by_sample else 1))

    def interpolated(self) -> _ChunkedGrid:
        """A copy that goes on with ``(3, m)`` pieces (an interpolated grid whose points so
        far are the ones pushed here)."""
        out = copy.deepcopy(self)
        if out.by_sample:
            out.by_sample = False
            out._buf = [b.T for b in out._buf]
        return out

    def _count(self, chunk: F64) -> None:
        self._secs.append(self.counter.seconds(chunk.T if self.by_sample else chunk))

    def finish(self) -> I64:
        """Per-axis counts ``(n_sec, 3)`` of all grid points pushed."""
        if self._n_buf:
            self._count(np.concatenate(self._buf, axis=0 if self.by_sample else 1))
            self._buf, self._n_buf = [], 0
        return np.concatenate(self._secs) if self._secs else np.zeros((0, 3), dtype=np.int64)


class _Segment:
    """One segment of :func:`counts_from_stream`, fed in pieces.

    Whether the segment is counted as it is (its samples within 5 % of a period of the
    grid) or interpolated is known only at its end, so both are carried while they can
    differ: the samples themselves while every one is on the grid, the interpolated grid
    from the first sample not exactly on it (until then both are the same values).
    """

    def __init__(self, fs: int, t0_ns: int) -> None:
        self.fs = fs
        self.step_ns = 1e9 / fs
        self.t0_ns = t0_ns
        self.size = 0
        self.last_ns = t0_ns
        self._last: tuple[float, F64] | None = None  # newest sample (rel. time, values)
        self._raw: _ChunkedGrid | None = _ChunkedGrid(fs, by_sample=True)
        self._interp: _ChunkedGrid | None = None

    def feed(self, t: I64, a: F64) -> None:
        rel = (t - self.t0_ns).astype(np.float64)
        on_grid = np.arange(self.size, self.size + t.size) * self.step_ns
        split = 0
        if self._interp is None:  # every sample so far exactly on the grid
            off = np.flatnonzero(rel != on_grid)
            split = int(off[0]) if off.size else t.size
            assert self._raw is not None
            self._raw.push(a[:split])
            if split:
                self._last = (float(rel[split - 1]), a[split - 1].copy())
            if split == t.size:
                self._advance(t)
                return
            self._interp = self._raw.interpolated()
        if self._raw is not None:
            if np.max(np.abs(rel[split:] - on_grid[split:])) < 0.05 * self.step_ns:
                self._raw.push(a[split:])
            else:
                self._raw = None
        self._interp.push(self._interpolate(rel[split:], a[split:]))
        self._advance(t)

    def _advance(self, t: I64) -> None:
        self.size += t.size
        self.last_ns = int(t[-1])

    def _interpolate(self, rel: F64, a: F64) -> F64:
        """Grid points up to the newest sample (the values the whole segment gives)."""
        assert self._interp is not None
        grid, self._last, _k_end = _grid_to_newest(self._last, rel, a, self._interp.points,
                                                   self.step_ns)
        return grid

    def close(self) -> I64:
        """Per-axis counts ``(n_sec, 3)`` of the segment (none if shorter than ``fs``
        samples, i.e. than one count bin)."""
        if self.size < self.fs:
            return np.zeros((0, 3), dtype=np.int64)
        n = int(np.floor(np.int64(self.last_ns - self.t0_ns) / self.step_ns + 0.5)) + 1
        if self._raw is not None and n == self.size:
            return self._raw.finish()
        if self._interp is None:
            assert self._raw is not None
            self._interp = self._raw.interpolated()
        grid = self._interp
        assert self._last is not None
        # the grid runs on to the nearest point past the last sample, holding its value
        grid.push(np.repeat(self._last[1][:, None], max(0, n - grid.points), axis=1))
        return grid.finish()


class SegmentCounter:
    """:func:`counts_from_stream`, fed in pieces: the same counts, bit for bit.

    Each segment's grid points (its own samples, or the interpolated grid) reach the
    count filters in the same :data:`_CHUNK`-point chunks as in one call over the whole stream,
    so the filters round alike. Unlike :class:`CountStreamer` the bins of a segment are
    known only when it ends (:meth:`close`, or a gap), and the rate is given.

    Parameters
    ----------
    fs_hz
        Nominal sampling rate (``nominal_rate`` of the whole stream); the nearest of
        :data:`SUPPORTED_HZ` is used.
    max_gap_s
        A longer gap between samples ends the segment.
    """

    def __init__(self, fs_hz: float, *, max_gap_s: float = 1.0) -> None:
        if not fs_hz > 0:
            raise StagingError(f"SegmentCounter needs a positive sampling rate, got {fs_hz}")
        self.fs = count_rate(fs_hz)
        self.max_gap_s = max_gap_s
        self._seg: _Segment | None = None
        self._out_t: list[I64] = []
        self._out_c: list[F64] = []

    def feed(self, t_ns: I64, acc_g: F64) -> None:
        """Add clean samples (sorted, finite), none older than the last one fed."""
        t = np.asarray(t_ns, dtype=np.int64)
        a = np.asarray(acc_g, dtype=np.float64).reshape(t.size, 3)
        if not t.size:
            return
        if not np.isfinite(a).all():
            raise StagingError("acc_g contains NaN or inf; clean it first (epochs.clean_series)")
        if self._seg is not None and int(t[0]) < self._seg.last_ns:
            raise StagingError(f"SegmentCounter: samples older than the last one fed "
                               f"({int(t[0])} < {self._seg.last_ns} ns)")
        breaks = np.flatnonzero(np.diff(t) > self.max_gap_s * 1e9) + 1
        for lo, hi in itertools.pairwise([0, *breaks.tolist(), t.size]):
            if (lo > 0 or self._seg is None
                    or int(t[0]) - self._seg.last_ns > self.max_gap_s * 1e9):
                self._start(int(t[lo]))
            assert self._seg is not None
            self._seg.feed(t[lo:hi], a[lo:hi])

    def _start(self, t0_ns: int) -> None:
        self._end_segment()
        self._seg = _Segment(self.fs, t0_ns)

    def _end_segment(self) -> None:
        if self._seg is None:
            return
        _add_bins(self._seg.t0_ns, 0, self._seg.close(), self._out_t, self._out_c)
        self._seg = None

    def close(self) -> CountStream:
        """End the last segment; the 1-s bins of all samples fed."""
        self._end_segment()
        return _count_stream(self._out_t, self._out_c)


class CountStreamer:
    """:func:`counts_from_stream`, fed piece by piece: the live daemon's motion counts.

    Every step of the count algorithm is causal (linear interpolation onto the nominal
    grid, the rate conversion's low-pass, the band-pass, per-sample rectification, sums of
    whole tenths and seconds), so the filter states and the unfinished tenth and second are
    carried from one :meth:`feed` to the next and each 1-s bin is computed once, when it
    is complete. After :meth:`close` the bins equal ``counts_from_stream`` over the whole
    stream, value for value and time for time, for segments of at least one second whose
    samples ``counts_from_stream`` interpolates (any clock drift over the segment beyond
    5 % of a sample period, as a night of a real device has) or that lie on the grid
    exactly. Samples must be clean (sorted, unique, finite; see ``epochs.clean_series``).

    Parameters
    ----------
    fs_hz
        Nominal sampling rate; the nearest of :data:`SUPPORTED_HZ` is used.
    max_gap_s
        A longer gap between samples closes the segment and starts a new one.
    """

    def __init__(self, fs_hz: float, *, max_gap_s: float = 1.0) -> None:
        if not fs_hz > 0:
            raise StagingError(f"CountStreamer needs a positive sampling rate, got {fs_hz}")
        self.fs = count_rate(fs_hz)
        self.step_ns = 1e9 / self.fs
        self.max_gap_ns = max_gap_s * 1e9
        self.last_t_ns: int | None = None
        """Time of the newest sample fed (``None`` before the first)."""
        self._t0 = 0

    def _start(self, t0: int) -> None:
        self._t0 = t0
        self._k = 0  # next grid index to produce
        self._last: tuple[float, F64] | None = None  # newest sample (rel. time, values)
        self._counter = _GridCounter(self.fs)
        self._sec = 0  # 1-s bins emitted in this segment

    def feed(self, t_ns: I64, acc_g: F64) -> CountStream:
        """Add samples (newer than :attr:`last_t_ns`); return the 1-s bins they complete."""
        t = np.asarray(t_ns, dtype=np.int64)
        a = np.asarray(acc_g, dtype=np.float64).reshape(t.size, 3)
        if t.size and self.last_t_ns is not None and int(t[0]) <= self.last_t_ns:
            raise StagingError(
                f"CountStreamer: samples must be newer than the last one fed "
                f"({int(t[0])} <= {self.last_t_ns} ns)")
        out_t: list[I64] = []
        out_c: list[F64] = []
        prev = self.last_t_ns
        steps = np.diff(t)
        cuts = [0, t.size]
        if steps.size and steps.max() > self.max_gap_ns:
            cuts = [0, *(np.flatnonzero(steps > self.max_gap_ns) + 1).tolist(), t.size]
        for lo, hi in itertools.pairwise(cuts):
            if hi <= lo:
                continue
            if prev is None or int(t[lo]) - prev > self.max_gap_ns:
                if prev is not None:
                    self._emit(self._close_grid(), out_t, out_c)
                self._start(int(t[lo]))
            self._emit(self._grid(t[lo:hi], a[lo:hi]), out_t, out_c)
            prev = int(t[hi - 1])
        self.last_t_ns = prev
        return _count_stream(out_t, out_c)

    def close(self) -> CountStream:
        """End the current segment (as at a gap): the bins of its last grid points."""
        out_t: list[I64] = []
        out_c: list[F64] = []
        if self.last_t_ns is not None:
            self._emit(self._close_grid(), out_t, out_c)
        self.last_t_ns = None
        return _count_stream(out_t, out_c)

    def _grid(self, t: I64, a: F64) -> F64:
        """Grid samples up to the newest raw sample, by linear interpolation."""
        rel = (t - self._t0).astype(np.float64)
        grid, self._last, k_end = _grid_to_newest(self._last, rel, a, self._k, self.step_ns)
        self._k = max(self._k, k_end)
        return grid

    def _close_grid(self) -> F64:
        """The segment's remaining grid points (``counts_from_stream`` extends the grid to
        the nearest point past the last sample, holding its value)."""
        if self._last is None:
            return np.zeros((3, 0))
        rel_last, a_last = self._last
        n = int(np.floor(rel_last / self.step_ns + 0.5)) + 1
        extra = max(0, n - self._k)
        self._k += extra
        return np.repeat(a_last[:, None], extra, axis=1)

    def _emit(self, grid: F64, out_t: list[I64], out_c: list[F64]) -> None:
        self._sec += _add_bins(self._t0, self._sec, self._counter.seconds(grid), out_t, out_c)


def _grid_to_newest(last: tuple[float, F64] | None, rel: F64, a: F64, first_k: int,
                    step_ns: float) -> tuple[F64, tuple[float, F64], int]:
    """Grid points ``first_k`` ... up to the newest sample, ``(3, m)``, by ``np.interp``
    between the two samples around each (``last``, the newest sample of the previous
    piece, comes first); also the new newest sample (time relative to the segment's start,
    values) and the index after the last grid point the samples reach."""
    if last is not None:
        rel = np.concatenate(([last[0]], rel))
        a = np.concatenate((last[1][None, :], a))
    k_end = int(np.floor(rel[-1] / step_ns)) + 1
    g = np.arange(first_k, k_end) * step_ns
    return (np.stack([np.interp(g, rel, a[:, j]) for j in range(3)]),
            (float(rel[-1]), a[-1].copy()), k_end)


def _add_bins(t0_ns: int, first_sec: int, per_axis: I64, out_t: list[I64],
              out_c: list[F64]) -> int:
    """Append the 1-s bins of per-axis counts ``(n, 3)`` (seconds ``first_sec`` ... after
    ``t0_ns``) as times and vector magnitudes; returns ``n``."""
    n_sec = per_axis.shape[0]
    if n_sec:
        out_t.append(t0_ns + (first_sec + np.arange(n_sec, dtype=np.int64)) * 1_000_000_000)
        out_c.append(np.sqrt((per_axis.astype(np.float64) ** 2).sum(axis=1)))
    return n_sec


def _count_stream(out_t: list[I64], out_c: list[F64]) -> CountStream:
    if not out_t:
        return CountStream(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0)
    return CountStream(np.concatenate(out_t), np.concatenate(out_c), 1.0)


def enmo_g(acc_g: F64) -> F64:
    """Euclidean norm minus one, negatives clipped to 0 (van Hees et al. 2013), per sample."""
    a = np.asarray(acc_g, dtype=np.float64)
    return np.maximum(np.sqrt((a**2).sum(axis=1)) - 1.0, 0.0)


def angle_deg(acc_g: F64, fs_hz: float) -> F64:
    """van Hees (2015) angle per sample: ``atan(z / sqrt(x^2 + y^2))`` in degrees, on the
    5-s rolling median of each axis."""
    a = np.asarray(acc_g, dtype=np.float64)
    from scipy import ndimage  # only here: the daemon's scoring never needs it

    w = max(1, round(5 * fs_hz))
    med = ndimage.median_filter(a, size=(w, 1), mode="nearest")
    return np.degrees(np.arctan2(med[:, 2], np.hypot(med[:, 0], med[:, 1])))
