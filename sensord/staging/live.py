"""Provisional staging every 30 s from rolling buffers: the live daemon's stager. Pure.

The final stages of a night come from its whole session log (:func:`score_night` once,
in the morning). During the night the daemon wants every completed 30-s epoch staged
within one epoch, from the data of the last minutes. Re-running ``score_night`` over a
10-min window of 50-Hz acceleration every 30 s would compute the same activity counts
twenty times over (the count filter is the dearest step of a window's score), so
:class:`LiveStager` keeps a :class:`~sensord.staging.motion.CountStreamer` per
acceleration source: each call hands it only the samples that arrived since the last
one, and the window is scored from the 1-s counts (``score_night``'s counts path, the
one devices with their own counts take) together with the window's heart rate and beats.

The counts equal those of a whole-night ``counts_from_stream`` (see ``CountStreamer``);
the stages are provisional because the window is short: the per-night normalisation and
the temporal context of the stager see ten minutes, not the night.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sensord.model import AccStream, CountStream, NightStreams
from sensord.staging.core import NightResult, clean_acc, score_night
from sensord.staging.motion import CountStreamer, nominal_rate


@dataclasses.dataclass
class LiveStager:
    """Rolling 1-s motion counts and the window scorer (one per daemon, in its provisional thread).

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

    def add_acc(self, source: str, acc: AccStream) -> int:
        """Count newly arrived acceleration of ``source`` (repaired times); returns the
        number of 1-s bins completed."""
        if source != self.source:
            self.source, self.streamer = source, None
            self.counts = CountStream(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0)
        t, a, dropped = clean_acc(acc.t_ns, acc.acc_g)
        if self.streamer is not None and self.streamer.last_t_ns is not None:
            newer = t > self.streamer.last_t_ns
            dropped += int(newer.size - np.count_nonzero(newer))
            t, a = t[newer], a[newer]
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

    def score(self, night: NightStreams, *, tz: str,
              hrv_from_ns: int | None = None) -> NightResult:
        """Score ``night`` (heart rate, beats, off-body; its window) with the rolling
        counts in place of raw acceleration; HRV only from ``hrv_from_ns`` on (the epochs
        the caller reports; see ``score_night``)."""
        window = dataclasses.replace(night, acc=None, counts=self.counts if len(self.counts)
                                     else None)
        return score_night(window, tz=tz, hrv_from_ns=hrv_from_ns)
