"""Provisional staging every 30 s from rolling buffers: the live daemon's stager. Pure.

The final stages of a night come from its whole session log (:func:`score_night` once,
in the morning). During the night the daemon wants every completed 30-s epoch staged
within one epoch. :class:`LiveStager` does that causally, carrying the night so far:

* **motion counts**: a :class:`~sensord.staging.motion.CountStreamer` per acceleration
  source is handed only the samples that arrived since the last call (the count filter
  is the dearest step; its counts equal a whole-night ``counts_from_stream``);
* **per-epoch inputs** of the new epochs (heart rate, counts, coverage, Walch's count and
  heart-rate features, RR flags, HRV): :func:`~sensord.staging.core.epoch_inputs` of the
  last ten minutes (the features need 285 s either side of an epoch; the newest epochs
  see only the past side);
* **stage**: the inputs of every epoch of the night so far are kept; each new epoch gets
  the per-night normalisation (:func:`~sensord.staging.features.normalise_night`) over
  the night so far, its design row (:func:`~sensord.staging.features.design_row`: the
  context windows end at the newest epoch, as the whole night's end at its last),
  the classifier's emission and one step of the HMM's forward recursion
  (:func:`~sensord.staging.hmm.forward_step`). Its stage and probabilities are
  therefore those :func:`score_night` would give the newest epoch of a night that ended
  there, with the earlier epochs' inputs as they were when each was staged.

This costs a few dozen numpy calls per epoch, where scoring the window again with
``score_night`` cost some 3,000 (the design matrix, normalisation, forward-backward and
summary of the whole window every 30 s). The stages stay provisional: the newest epochs'
features lack the 285 s after them and the HMM has no backward pass; the final
hypnogram always comes from the log.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord import clock
from sensord.model import EPOCH_NS, AccStream, CountStream, NightStreams
from sensord.staging.core import clean_acc, default_model, epoch_inputs, with_feature_set
from sensord.staging.features import design_row, normalise_night
from sensord.staging.hmm import forward_step
from sensord.staging.motion import CountStreamer, nominal_rate
from sensord.staging.stager import StagerModel, design_builders, emissions, usable_sets

F64 = npt.NDArray[np.float64]

MAX_GAP_S = 3 * 3600
"""Epochs without data that a night may hold before the stager starts a new night."""


@dataclasses.dataclass
class NightSoFar:
    """Per-epoch inputs of every epoch staged so far this night, and the HMM's state."""

    key: str
    """The night's identity from the caller (e.g. its log); a new key starts a new night."""
    start_ns: int
    """Start of the night's first epoch (its ``time_h`` is 0)."""
    label: str
    """The night's date in the participant's time zone (``clock.night_of`` its start)."""
    count_feature: F64 = dataclasses.field(default_factory=lambda: np.zeros(0))
    hr_feature: F64 = dataclasses.field(default_factory=lambda: np.zeros(0))
    alpha: F64 | None = None
    """Filtered state distribution of the last epoch."""

    @property
    def n(self) -> int:
        return int(self.count_feature.size)

    @property
    def next_ns(self) -> int:
        """Start of the next epoch to stage."""
        return self.start_ns + self.n * EPOCH_NS

    def append(self, count_feature: F64, hr_feature: F64) -> None:
        self.count_feature = np.concatenate((self.count_feature, count_feature))
        self.hr_feature = np.concatenate((self.hr_feature, hr_feature))


@dataclasses.dataclass(frozen=True)
class LiveEpochs:
    """Provisional result of :meth:`LiveStager.stage` for the newly staged epochs."""

    t_ns: npt.NDArray[np.int64]
    stages: npt.NDArray[np.int8]
    """Stage codes (-1 unscored)."""
    probabilities: F64
    """``(n, 4)`` filtered posteriors (``NaN`` rows unscored)."""
    features: dict[str, npt.NDArray[Any]]
    """As ``NightResult.features``, for these epochs."""
    scorer: str
    night: str


@dataclasses.dataclass
class LiveStager:
    """Rolling 1-s motion counts and the night so far (one per daemon, in its provisional thread).

    Parameters
    ----------
    keep_s
        Counts kept (seconds before the newest); at least the scoring window.
    """

    keep_s: float = 900.0
    source: str = ""
    """The device whose acceleration is counted (a new one restarts the counts)."""
    counts: CountStream = dataclasses.field(
        default_factory=lambda: CountStream(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0))
    streamer: CountStreamer | None = None
    dropped: int = 0
    """Acceleration samples left out: not finite, out of range, or not newer than the last."""
    night: NightSoFar | None = None

    def add_acc(self, source: str, acc: AccStream) -> int:
        """Count newly arrived acceleration of ``source`` (repaired times); returns the
        number of 1-s bins completed."""
        if source != self.source:
            self.source, self.streamer = source, None
            self.counts = CountStream(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0)
        t, a, dropped = clean_acc(acc.t_ns, acc.acc_g)
        if self.streamer is not None and self.streamer.last_t_ns is not None:
            first_newer = int(np.searchsorted(t, self.streamer.last_t_ns, side="right"))
            dropped += first_newer  # (t is sorted)
            t, a = t[first_newer:], a[first_newer:]
        self.dropped += dropped
        if self.streamer is None:
            fs = nominal_rate(t)
            if fs <= 0:
                return 0
            self.streamer = CountStreamer(fs)
        new = self.streamer.feed(t, a)
        if len(new):
            keep_from = int(new.t_ns[-1]) - int(self.keep_s * 1e9)
            old = self.counts.t_ns >= keep_from
            self.counts = CountStream(
                np.concatenate((self.counts.t_ns[old], new.t_ns)),
                np.concatenate((self.counts.counts[old], new.counts)), 1.0)
        return len(new)

    def stage(self, window: NightStreams, *, lo_ns: int, end_ns: int, night_key: str,
              tz: str, model: StagerModel | None = None) -> LiveEpochs:
        """Stage the complete epochs of ``window`` in ``[lo_ns, end_ns)`` not staged yet
        (module docstring).

        ``window`` holds the last minutes of heart rate, beats and off-body reports
        (repaired times; its acceleration is ignored: the counts kept here stand in). HRV
        is computed for the new epochs only. Epochs skipped since the last call (no data,
        a restart of the recording) enter the night unscored; a new ``night_key`` or a
        gap of more than :data:`MAX_GAP_S` starts a new night.
        """
        mdl = model if model is not None else default_model()
        counted = dataclasses.replace(window, acc=None,
                                      counts=self.counts if len(self.counts) else None)
        inputs = epoch_inputs(counted, hrv_from_ns=lo_ns, features_from_ns=lo_ns)
        t_ep = inputs.features["t_ns"]
        night = self.night
        if night is not None and night.key == night_key:
            lo_ns = max(lo_ns, night.next_ns)  # never stage an epoch twice
        new = np.flatnonzero((t_ep >= lo_ns) & (t_ep + EPOCH_NS <= end_ns))
        if new.size == 0:
            return LiveEpochs(t_ep[:0], np.zeros(0, dtype=np.int8), np.zeros((0, 4)), {},
                              mdl.version, night.label if night else "")
        first_ns = int(t_ep[new[0]])
        if (night is None or night.key != night_key
                or first_ns - night.next_ns > MAX_GAP_S * 1_000_000_000):
            night = self.night = NightSoFar(night_key, first_ns,
                                            clock.night_of(first_ns, tz).isoformat())
        skipped = (first_ns - night.next_ns) // EPOCH_NS
        if skipped > 0:  # unscored epochs: no inputs, a flat emission each
            night.append(np.full(skipped, np.nan), np.full(skipped, np.nan))
            for _ in range(skipped):
                night.alpha = forward_step(night.alpha, np.ones(4), mdl.transition,
                                           mdl.initial)
        stages = np.full(new.size, -1, dtype=np.int8)
        probs = np.full((new.size, 4), np.nan)
        codes = np.zeros(new.size, dtype=np.int8)
        feats = inputs.features
        for k, i in enumerate(new):
            night.append(feats["count_feature"][i:i + 1], feats["hr_feature"][i:i + 1])
            count_n, hr_n = normalise_night(night.count_feature, night.hr_feature)
            design = design_builders(lambda c, h: design_row(c, h)[None, :], count_n, hr_n)
            usable = usable_sets(inputs.has_hr[i:i + 1], inputs.has_motion[i:i + 1])
            emission, code = emissions(mdl, design, usable)
            if mdl.smooth:
                night.alpha = forward_step(night.alpha, emission[0], mdl.transition,
                                           mdl.initial)
                post = night.alpha
            else:
                post = emission[0] * mdl.initial / (emission[0] * mdl.initial).sum()
            codes[k] = code[0]
            if code[0] > 0:
                stages[k] = int(np.argmax(post))
                probs[k] = post
        part = slice(int(new[0]), int(new[-1]) + 1)  # the new epochs are consecutive
        features = with_feature_set({key: v[part] for key, v in feats.items()}, codes)
        return LiveEpochs(t_ep[part], stages, probs, features, mdl.version, night.label)

