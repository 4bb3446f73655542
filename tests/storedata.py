"""Synthetic nights for the store tests and bench (arrays only; no science claimed).

Heart rate at 1 Hz with one decimal, RR intervals of the same rhythm, and 30-s epochs
with stage codes and probabilities -- the shapes and value resolutions the real
pipeline produces, so the line protocol and the server see realistic points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.model import EPOCH_NS, BeatStream, HeartRateStream
from sensord.store import points

NIGHT_START_NS = 1_764_021_600_000_000_000  # 2025-11-24 22:00:00 UTC, a multiple of 30 s


@dataclass
class Night:
    participant: str
    night: str
    hr: HeartRateStream
    beats: BeatStream
    epoch_t_ns: npt.NDArray[np.int64]
    stage_code: npt.NDArray[np.int64]
    proba: npt.NDArray[np.float64]

    def lines(self, *, with_beats: bool = True, scorer: str = "synthetic@1") -> bytes:
        body = points.heart_rate_lines(self.participant, "chest", self.hr)
        if with_beats:
            body += points.beat_lines(self.participant, "chest", self.beats)
        body += points.epoch_lines(
            self.participant,
            scorer,
            self.epoch_t_ns,
            self.stage_code,
            self.proba,
            final=True,
            night=self.night,
        )
        return body

    @property
    def n_points(self) -> int:
        return len(self.hr) + len(self.beats) + self.epoch_t_ns.size


def make_night(
    participant: str = "P-001",
    *,
    hours: float = 8.0,
    start_ns: int = NIGHT_START_NS,
    seed: int = 0,
    night: str = "2025-11-24",
    with_beats: bool = True,
) -> Night:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    t = start_ns + np.arange(n, dtype=np.int64) * 1_000_000_000
    hr = np.round(60 + 5 * np.sin(np.arange(n) / 900) + rng.normal(0, 2, n), 1)
    hr[rng.random(n) < 0.01] = np.nan  # dropouts: no point written
    if with_beats:
        rr = np.round(60_000 / np.clip(np.nan_to_num(hr, nan=60.0), 40, 120) + rng.normal(0, 20, n))
        beat_t = start_ns + np.cumsum(rr).astype(np.int64) * 1_000_000
        keep = beat_t < start_ns + n * 1_000_000_000
        beats = BeatStream(beat_t[keep], rr[keep])
    else:
        beats = BeatStream(np.zeros(0, np.int64), np.zeros(0))
    n_ep = n * 1_000_000_000 // EPOCH_NS
    ep_t = start_ns + np.arange(n_ep, dtype=np.int64) * EPOCH_NS
    raw = rng.dirichlet(np.ones(4), n_ep)
    proba = np.round(raw, 4)
    codes = np.argmax(proba, axis=1).astype(np.int64)
    codes[:3] = -1  # unscored epochs at the start
    proba[:3] = np.nan
    return Night(participant, night, HeartRateStream(t, hr), beats, ep_t, codes, proba)
