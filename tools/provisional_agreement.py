"""How far the live daemon's provisional stages agree with the night's final stages.

Usage: python tools/provisional_agreement.py [--nights 6] [--hours 8] [--seed 21]

Simulated nights (``sensord.simulate``: Polar H10 heart rate and beats, 50-Hz
accelerometer, ~90-min cycles, a ground-truth hypnogram) are staged three ways:

* **final**: ``score_night`` of the whole night (what the morning re-score stores);
* **causal** (the daemon's provisional stager since 2026-12-07): every 30 s the epoch that
  has just ended, by ``LiveStager.stage`` from the last ten minutes of heart rate and
  beats and the night's counts so far;
* **window** (the provisional stager before it): ``score_night`` of the last ten minutes
  alone, its newest epoch.

Prints per night and pooled: agreement and Cohen's kappa of each provisional scorer with
the final stages, and of every scorer with the simulated truth (wake / light = N1+N2 /
deep = N3 / REM). Epochs unscored by either side of a comparison are left out. The
simulator's physiology is a model, not people: these figures compare the scorers with
each other, not with polysomnography (docs/staging.md has the accuracy on real data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensord.model import (  # noqa: E402
    EPOCH_NS,
    AccStream,
    BeatStream,
    HeartRateStream,
    NightStreams,
)
from sensord.simulate import SimConfig, simulate_night  # noqa: E402
from sensord.staging.core import score_night  # noqa: E402
from sensord.staging.live import LiveStager  # noqa: E402
from sensord.staging.motion import counts_from_stream  # noqa: E402
from sensord.staging.train import cohen_kappa  # noqa: E402

WINDOW_NS = 600 * 10**9
TRUTH_TO_4 = np.array([0, 1, 1, 2, 3])  # W, N1, N2, N3, R -> wake, light, deep, REM


def _cut(stream: HeartRateStream | BeatStream, lo: int, hi: int) -> HeartRateStream | BeatStream:
    keep = (stream.t_ns >= lo) & (stream.t_ns < hi)
    values = stream.hr_bpm if isinstance(stream, HeartRateStream) else stream.rr_ms
    return type(stream)(stream.t_ns[keep], values[keep])


def stage_night(seed: int, hours: float) -> dict[str, np.ndarray]:
    """Stage codes per epoch of one simulated night: truth, final, causal, window."""
    sn = simulate_night(SimConfig(seed=seed, duration_h=hours, acc_rate_hz=50.0), 0)
    sec = sn.beat_t_ns // 10**9
    _, first = np.unique(sec, return_index=True)  # a strap's 1-Hz heart rate
    hr = HeartRateStream(sn.beat_t_ns[first], 60000.0 / sn.rr_ms[first])
    beats = BeatStream(sn.beat_t_ns, sn.rr_ms)
    counts = counts_from_stream(AccStream(sn.acc_t_ns, sn.acc_g))
    night = NightStreams(int(sn.start_ns), int(sn.end_ns), hr=hr, beats=beats, counts=counts)
    final = score_night(night, tz="UTC")
    t_final = final.features["t_ns"]
    stager = LiveStager(keep_s=10**6)
    stager.counts = counts
    causal = np.full(t_final.size, -1)
    window = np.full(t_final.size, -1)
    for i in range(2, t_final.size - 1):
        end = int(t_final[i]) + EPOCH_NS
        lo = end - WINDOW_NS
        recent = NightStreams(max(lo, night.start_ns), end, hr=_cut(hr, lo, end),
                              beats=_cut(beats, lo, end))
        got = stager.stage(recent, lo_ns=end - EPOCH_NS, end_ns=end, night_key="n", tz="UTC")
        causal[i] = int(got.stages[0])
        keep = (counts.t_ns >= lo) & (counts.t_ns < end)
        alone = score_night(NightStreams(recent.start_ns, end, hr=recent.hr, beats=recent.beats,
                                         counts=type(counts)(counts.t_ns[keep],
                                                             counts.counts[keep], 1.0)),
                            tz="UTC")
        window[i] = int(alone.hypnogram.stages[-1])
    idx = (t_final - sn.epoch_t_ns[0]) // EPOCH_NS
    inside = (idx >= 0) & (idx < sn.stage.size)
    truth = np.full(t_final.size, -1)
    truth[inside] = TRUTH_TO_4[sn.stage[idx[inside]]]
    return {"truth": truth, "final": np.asarray(final.hypnogram.stages, dtype=np.int64),
            "causal": causal, "window": window}


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    both = (a >= 0) & (b >= 0)
    return (float(np.mean(a[both] == b[both])), cohen_kappa(a[both], b[both], 4),
            int(both.sum()))


PAIRS = (("causal", "final"), ("window", "final"), ("final", "truth"), ("causal", "truth"),
         ("window", "truth"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=6)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    pooled: dict[str, list[np.ndarray]] = {}
    print("night  " + "  ".join(f"{a}~{b:<6}" for a, b in PAIRS) + "   (agreement % / kappa)")
    for k in range(args.nights):
        codes = stage_night(args.seed + k, args.hours)
        for key, v in codes.items():
            pooled.setdefault(key, []).append(v)
        cells = [compare(codes[a], codes[b]) for a, b in PAIRS]
        print(f"{args.seed + k:5d}  " + "  ".join(f"{100 * p:5.1f} / {kp:4.2f} " for p, kp, _ in
                                                cells), flush=True)
    whole = {key: np.concatenate(v) for key, v in pooled.items()}
    cells = [compare(whole[a], whole[b]) for a, b in PAIRS]
    print("all    " + "  ".join(f"{100 * p:5.1f} / {kp:4.2f} " for p, kp, _ in cells))
    counts = [f"{a}~{b} {n}" for (a, b), (_, _, n) in zip(PAIRS, cells, strict=True)]
    print(f"epochs compared: {', '.join(counts)}")


if __name__ == "__main__":
    main()
