"""``score_night``: decoded streams of one night -> hypnogram, per-epoch features, summary.

The one entry the CLI, the daemon and the backfill use. Pure: arrays in, values out.

Steps (each vectorised): clean every stream (sort, drop duplicated timestamps and
non-finite or implausible values, counting what was dropped); 30-s epoch grid; per-epoch
coverage per stream; motion counts (device counts, else ActiGraph counts from raw
acceleration); RR artefact correction, heart rate and 5-min HRV; Walch features,
per-night normalisation and context; the stager; night metrics; night assignment in the
participant's time zone.

An epoch is scored when at least half of it is covered by a stream the model can use
(``MIN_COVERAGE``) and the device was not reported off the body in it; otherwise it is
unscored (stage -1) and counts against ``coverage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord import clock
from sensord.errors import StagingError
from sensord.model import EPOCH_NS, EPOCH_S, AccStream, BeatStream, CountStream, NightStreams
from sensord.staging import cardiac, features, motion
from sensord.staging.epochs import (
    EpochGrid,
    clean_series,
    epoch_grid,
    epoch_index,
    epoch_mean,
    interval_coverage,
    second_coverage,
)
from sensord.staging.hypnogram import Hypnogram
from sensord.staging.metrics import night_metrics
from sensord.staging.stager import (
    FEATURE_SETS,
    StagerModel,
    design_builders,
    load_model,
    stage,
    usable_sets,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
S_NS = 1_000_000_000

MIN_COVERAGE = 0.5
HR_RANGE_BPM = (25.0, 250.0)
ACC_MAX_G = 16.0

_MODEL_CACHE: dict[str, StagerModel] = {}


@dataclass(frozen=True, slots=True)
class NightResult:
    """Result of :func:`score_night`.

    ``features`` holds one array per name, one value per epoch: ``t_ns``, ``hr_bpm``,
    ``counts`` (sum of counts in the epoch), ``hr_cover``/``motion_cover`` (0..1),
    ``off_body``, ``rr_flags``, the Walch ``count_feature``/``hr_feature``, ``feature_set``
    (0 none, 1 hr+motion, 2 hr, 3 motion) and the HRV values of
    :func:`sensord.staging.cardiac.hrv_per_epoch`.
    """

    hypnogram: Hypnogram
    features: dict[str, npt.NDArray[Any]]
    summary: dict[str, Any]


def default_model() -> StagerModel:
    if "default" not in _MODEL_CACHE:
        _MODEL_CACHE["default"] = load_model()
    return _MODEL_CACHE["default"]


def _clip(grid: EpochGrid, t: I64) -> npt.NDArray[np.bool_]:
    return (t >= grid.start_ns) & (t < grid.end_ns)


def _per_second(grid: EpochGrid, t_ns: I64, values: F64, bin_s: float) -> F64:
    """Spread binned values over the night's 1-s grid (``NaN`` where no bin covers)."""
    n_s = grid.n * EPOCH_S
    out = np.zeros(n_s)
    seen = np.zeros(n_s)
    width = max(1, round(bin_s))
    first = (t_ns - grid.start_ns) // S_NS
    secs = (first[:, None] + np.arange(width)[None, :]).ravel()
    vals = np.repeat(values / width, width)
    ok = (secs >= 0) & (secs < n_s)
    np.add.at(out, secs[ok], vals[ok])
    np.add.at(seen, secs[ok], 1.0)
    return np.where(seen > 0, out, np.nan)


def clean_acc(t_ns: npt.NDArray[np.int64], acc_g: F64) -> tuple[npt.NDArray[np.int64], F64, int]:
    """Acceleration fit to count: ``epochs.clean_series`` (sorted, unique, finite) and no
    axis beyond :data:`ACC_MAX_G`; returns times, samples and how many were left out."""
    t = np.asarray(t_ns, dtype=np.int64).reshape(-1)
    a = np.asarray(acc_g, dtype=np.float64)
    if (a.ndim == 2 and a.size and a.shape[0] == t.size  # the usual piece: nothing to drop
            and a.max() <= ACC_MAX_G and a.min() >= -ACC_MAX_G  # (False for any NaN)
            and bool((t[1:] > t[:-1]).all())):
        return t, a, 0
    t, a, dropped = clean_series(t, a)
    in_range = np.ones(len(a), dtype=bool)
    for lo in range(0, len(a), 1 << 16):  # in blocks: no night-long |a| intermediate
        block = in_range[lo : lo + (1 << 16)]
        for k in range(a.shape[1]):  # axis by axis: 7x faster than a row-wise max
            block &= np.abs(a[lo : lo + (1 << 16), k]) <= ACC_MAX_G
    if not in_range.all():
        t, a = t[in_range], a[in_range]
    return t, a, dropped + int(in_range.size - np.count_nonzero(in_range))


def acc_counts(grid: EpochGrid, acc: AccStream) -> tuple[CountStream, int]:
    """The night's motion counts from raw acceleration: :func:`clean_acc`, the samples
    inside ``grid``, :func:`sensord.staging.motion.counts_from_stream`. Returns the counts
    and how many samples cleaning left out."""
    a = np.asarray(acc.acc_g, dtype=np.float64)
    if a.ndim != 2 or a.shape != (len(acc), 3):
        raise StagingError(
            f"acc_g must have shape ({len(acc)}, 3) (x, y, z in g), got {a.shape}"
        )
    t, a, dropped = clean_acc(acc.t_ns, a)
    ok = _clip(grid, t)
    if not ok.all():  # copy only when something is dropped
        t, a = t[ok], a[ok]
    return motion.counts_from_stream(AccStream(t, a)), dropped


class AccCounter:
    """:func:`acc_counts` of acceleration fed in pieces, in time order, as it is decoded:
    the night's samples need not be held at once.

    Exact where cleaning and clipping would leave the whole stream as it is (each piece
    clean, strictly newer than the one before, every sample inside the grid) and the
    first piece gives the stream's count rate: then the counts are
    :func:`sensord.staging.motion.counts_from_stream`'s, which counts pieces as it counts
    the whole. :meth:`result` checks that and gives ``None`` otherwise (the caller counts
    the whole stream instead).
    """

    def __init__(self) -> None:
        self.exact = True
        """Whether the pieces so far allow the exact counts (once ``False``, feeding stops)."""
        self._counter: motion.SegmentCounter | None = None
        self._first_ns = 0
        self._last_ns: int | None = None
        self._samples = 0
        self._checksum = 0  # of the times in the order fed (see _order_checksum)

    def feed(self, t_ns: I64, acc_g: F64) -> None:
        """Add one piece of samples (times ``(n,)``, acceleration ``(n, 3)`` in g)."""
        if not self.exact or not len(t_ns):
            return
        if np.ndim(acc_g) != 2 or np.shape(acc_g) != (len(t_ns), 3):  # acc_counts says why
            self.exact, self._counter = False, None
            return
        t, a, dropped = clean_acc(t_ns, acc_g)
        if dropped or (self._last_ns is not None and int(t[0]) <= self._last_ns):
            self.exact, self._counter = False, None
            return
        if self._counter is None:
            fs_hz = motion.nominal_rate(t)
            if fs_hz <= 0:
                self.exact = False
                return
            self._counter = motion.SegmentCounter(fs_hz)
            self._first_ns = int(t[0])
        self._counter.feed(t, a)
        self._checksum = _order_checksum(t, self._samples, self._checksum)
        self._last_ns = int(t[-1])
        self._samples += t.size

    def result(self, grid: EpochGrid, t_ns: I64) -> tuple[CountStream, int] | None:
        """``acc_counts(grid, AccStream(t_ns, <the samples fed>))``, or ``None`` if the
        pieces did not allow it. ``t_ns`` are the times of all samples fed, in the order
        of the stream :func:`acc_counts` would be given (checked against the order fed)."""
        t = np.asarray(t_ns, dtype=np.int64)
        if (not self.exact or self._counter is None or self._last_ns is None
                or t.size != self._samples or not t.size
                or self._first_ns < grid.start_ns or self._last_ns >= grid.end_ns
                or motion.count_rate(motion.nominal_rate(t)) != self._counter.fs
                or _order_checksum(t, 0, 0) != self._checksum):
            return None
        counts = self._counter.close()
        self.exact, self._counter = False, None  # used up
        return counts, 0


def _order_checksum(t_ns: I64, first_index: int, start: int) -> int:
    """``start`` plus the sum of ``t * (index + 1)`` over the times (wrapping int64): equal
    for the same times in the same order, whatever pieces they were summed in."""
    total = np.int64(start)
    with np.errstate(over="ignore"):
        for lo in range(0, t_ns.size, 1 << 16):
            part = t_ns[lo : lo + (1 << 16)]
            k = np.arange(first_index + lo + 1, first_index + lo + 1 + part.size, dtype=np.int64)
            total = total + np.sum(part * k, dtype=np.int64)
    return int(total)


def _epochs_before(grid: EpochGrid, from_ns: int | None) -> int:
    """How many epochs of ``grid`` start before ``from_ns`` (0 if ``None``)."""
    if from_ns is None:
        return 0
    return min(grid.n, max(0, -(-(from_ns - grid.start_ns) // EPOCH_NS)))


def _hrv_from(grid: EpochGrid, nn: cardiac.NNSeries, from_ns: int | None) -> dict[str, F64]:
    """``cardiac.hrv_per_epoch`` of the epochs from ``from_ns`` on (all if ``None``).

    Each epoch's HRV depends only on the beats of its own window (and the 4-Hz lattice
    of the band powers is fixed in absolute time), so the epochs of a later sub-grid get
    the values they get on the whole grid."""
    skip = _epochs_before(grid, from_ns)
    if skip == 0:
        return cardiac.hrv_per_epoch(grid, nn)
    part = cardiac.hrv_per_epoch(EpochGrid(grid.start_ns + skip * EPOCH_NS, grid.n - skip), nn)
    out: dict[str, F64] = {}
    for key, values in part.items():
        full = np.full(grid.n, 0.0 if key == "hrv_cover" else np.nan)
        full[skip:] = values
        out[key] = full
    return out


@dataclass(frozen=True, slots=True)
class EpochInputs:
    """Per-epoch values of :func:`epoch_inputs`: what the stager's features are made of.

    ``features`` holds ``t_ns``, ``hr_bpm``, ``counts``, ``hr_cover``, ``motion_cover``,
    ``off_body``, ``rr_flags``, the Walch ``count_feature``/``hr_feature`` (``NaN`` where
    the epoch lacks that stream) and the HRV values; ``has_hr``/``has_motion`` the epochs
    whose heart rate / motion is covered enough to be used (:data:`MIN_COVERAGE`, not off
    the body); ``quality`` the samples left out per stream.
    """

    grid: EpochGrid
    features: dict[str, npt.NDArray[Any]]
    has_hr: npt.NDArray[np.bool_]
    has_motion: npt.NDArray[np.bool_]
    quality: dict[str, int]


def epoch_inputs(streams: NightStreams, *, hrv_from_ns: int | None = None,
                 features_from_ns: int | None = None) -> EpochInputs:
    """Clean every stream and compute the per-epoch values of ``streams``' epoch grid
    (module docstring, up to the features); ``hrv_from_ns`` as in :func:`score_night`.

    ``features_from_ns``: the Walch ``count_feature`` and ``hr_feature`` only for the
    epochs starting at or after it (``NaN`` before; the others' values are the same as
    without it): the live stager stages only its newest epochs."""
    grid = epoch_grid(streams.start_ns, streams.end_ns)
    n = grid.n
    quality: dict[str, int] = {}

    # --- heart rate ------------------------------------------------------------------
    hr_t = np.zeros(0, dtype=np.int64)
    hr_v = np.zeros(0)
    if streams.hr is not None and len(streams.hr):
        t, v, dropped = clean_series(streams.hr.t_ns, streams.hr.hr_bpm)
        in_range = (v >= HR_RANGE_BPM[0]) & (v <= HR_RANGE_BPM[1])
        quality["hr_dropped"] = dropped + int(in_range.size - np.count_nonzero(in_range))
        plausible = in_range & _clip(grid, t)
        hr_t, hr_v = t[plausible], v[plausible]
    nn = None
    if streams.beats is not None and len(streams.beats):
        t, v, dropped = clean_series(streams.beats.t_ns, streams.beats.rr_ms)
        inside = _clip(grid, t)
        quality["rr_dropped"] = dropped
        nn = cardiac.correct_rr(BeatStream(t[inside], v[inside]))
        quality["rr_flagged"] = int(np.count_nonzero(nn.flags))
    if hr_t.size:
        hr_epoch = epoch_mean(grid, hr_t, hr_v)
        hr_cover = second_coverage(grid, hr_t)
        hr_src_t, hr_src_v = hr_t, hr_v
    elif nn is not None and nn.ok.any():
        hr_epoch = cardiac.hr_from_nn(grid, nn)
        hr_cover = interval_coverage(grid, nn.t_ns[nn.ok], (nn.nn_ms[nn.ok] * 1e6).astype(np.int64))
        hr_src_t, hr_src_v = nn.t_ns[nn.ok], 60000.0 / nn.nn_ms[nn.ok]
    else:
        hr_epoch = np.full(n, np.nan)
        hr_cover = np.zeros(n)
        hr_src_t, hr_src_v = hr_t, hr_v
    if nn is not None:
        hrv = _hrv_from(grid, nn, hrv_from_ns)
        rr_flags = cardiac.flags_per_epoch(grid, nn)
    else:
        hrv = _hrv_from(grid, cardiac.correct_rr(BeatStream(hr_t[:0], hr_v[:0])), hrv_from_ns)
        rr_flags = np.zeros(n, dtype=np.int64)

    # --- motion ------------------------------------------------------------------------
    counts: CountStream | None = None
    if streams.counts is not None and len(streams.counts):
        t, v, dropped = clean_series(streams.counts.t_ns, streams.counts.counts)
        ok = (v >= 0) & _clip(grid, t)
        quality["counts_dropped"] = dropped + int((v < 0).sum())
        counts = CountStream(t[ok], v[ok], float(streams.counts.bin_s))
    elif streams.acc_counts is not None:  # counted while decoded (the same counts)
        counts, quality["acc_dropped"] = streams.acc_counts.counts, streams.acc_counts.dropped
    elif streams.acc is not None and len(streams.acc):
        counts, quality["acc_dropped"] = acc_counts(grid, streams.acc)
    if counts is not None and len(counts) and n:
        bin_ns = round(counts.bin_s * S_NS)
        motion_cover = interval_coverage(grid, counts.t_ns + bin_ns,
                                         np.full(len(counts), bin_ns, dtype=np.int64))
        idx = epoch_index(grid, counts.t_ns)
        sel = idx >= 0
        epoch_counts = np.bincount(idx[sel], weights=counts.counts[sel], minlength=n)[:n]
        epoch_counts = np.where(motion_cover > 0, epoch_counts, np.nan)
        counts_1hz = _per_second(grid, counts.t_ns, counts.counts, counts.bin_s)
    else:
        motion_cover = np.zeros(n)
        epoch_counts = np.full(n, np.nan)
        counts_1hz = np.full(n * EPOCH_S, np.nan)

    # --- off body ------------------------------------------------------------------------
    off_body = np.zeros(n, dtype=bool)
    ob = epoch_index(grid, np.asarray(streams.off_body_t_ns, dtype=np.int64).reshape(-1))
    off_body[ob[ob >= 0]] = True

    # --- features ----------------------------------------------------------------------
    has_motion = (motion_cover >= MIN_COVERAGE) & ~off_body
    has_hr = (hr_cover >= MIN_COVERAGE) & ~off_body
    hr_1hz = cardiac.hr_1hz(hr_src_t, hr_src_v, grid.start_ns, n * EPOCH_S) if n else np.zeros(0)
    first = _epochs_before(grid, features_from_ns)
    count_feat = features.count_feature(counts_1hz, n, first)
    hr_feat = features.hr_feature(hr_1hz, n, first)
    count_feat = np.where(has_motion, count_feat, np.nan)
    hr_feat = np.where(has_hr, hr_feat, np.nan)
    return EpochInputs(
        grid,
        {
            "t_ns": grid.t_ns,
            "hr_bpm": hr_epoch,
            "counts": epoch_counts,
            "hr_cover": hr_cover,
            "motion_cover": motion_cover,
            "off_body": off_body,
            "rr_flags": rr_flags,
            "count_feature": count_feat,
            "hr_feature": hr_feat,
            **hrv,
        },
        has_hr,
        has_motion,
        quality,
    )


def score_night(
    streams: NightStreams, *, tz: str, model: StagerModel | None = None,
    hrv_from_ns: int | None = None,
) -> NightResult:
    """Score one night (see module docstring).

    Parameters
    ----------
    streams
        The night's decoded streams; any may be absent or empty.
    tz
        The participant's IANA time zone (night label and local times only).
    model
        Stager model; the shipped one if ``None``.
    hrv_from_ns
        Compute the HRV features only for epochs starting at or after this time (``NaN``,
        cover 0, before it; the values of the others are the same as without it). The
        live scorer reports only its newest epochs; stages never use HRV.
    """
    zone_check = clock.zone(tz)  # fail early, naming the zone
    del zone_check
    mdl = model if model is not None else default_model()
    inputs = epoch_inputs(streams, hrv_from_ns=hrv_from_ns)
    grid, n, quality = inputs.grid, inputs.grid.n, inputs.quality
    has_hr, has_motion = inputs.has_hr, inputs.has_motion
    hr_cover, motion_cover = inputs.features["hr_cover"], inputs.features["motion_cover"]
    off_body = inputs.features["off_body"]
    count_n, hr_n = features.normalise_night(inputs.features["count_feature"],
                                             inputs.features["hr_feature"])
    # built only for the sets some epoch falls back to (see stage)
    design = design_builders(lambda c, h: features.design_matrix(c, h, n), count_n, hr_n)
    usable = usable_sets(has_hr, has_motion)
    stages, probs, set_code = stage(mdl, design, usable)
    hyp = Hypnogram(grid.start_ns, stages, probs, mdl.version)

    # --- summary -----------------------------------------------------------------------
    summary: dict[str, Any] = night_metrics(hyp, hr_bpm=inputs.features["hr_bpm"],
                                             rmssd_ms=inputs.features["rmssd_ms"])
    onset = summary.get("sol_min")
    ref_ns = grid.start_ns + int((onset or 0) * 60 * S_NS)
    summary.update(
        night=clock.night_of(ref_ns, tz).isoformat() if n else None,
        tz=tz,
        start_local=clock.local_iso(grid.start_ns, tz),
        end_local=clock.local_iso(grid.end_ns, tz),
        start_ns=grid.start_ns,
        end_ns=grid.end_ns,
        epochs=n,
        scorer=mdl.version,
        hr_coverage=round(float(np.mean(hr_cover >= MIN_COVERAGE)), 4) if n else 0.0,
        motion_coverage=round(float(np.mean(motion_cover >= MIN_COVERAGE)), 4) if n else 0.0,
        off_body_epochs=int(off_body.sum()),
        feature_sets={name: int(np.sum(set_code == i)) for i, name in
                      enumerate(FEATURE_SETS, start=1)},
        data_quality=quality,
    )
    return NightResult(hyp, with_feature_set(inputs.features, set_code), summary)


def with_feature_set(features: dict[str, npt.NDArray[Any]], set_code: npt.NDArray[np.int8]
                     ) -> dict[str, npt.NDArray[Any]]:
    """``features`` with the feature set used per epoch, ``feature_set``, after the Walch
    features (the order of the stored fields)."""
    out: dict[str, npt.NDArray[Any]] = {}
    for key, values in features.items():
        out[key] = values
        if key == "hr_feature":
            out["feature_set"] = set_code
    return out
