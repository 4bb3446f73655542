"""Speed of the staging core against the peer chain a researcher would otherwise run.

Not a test: prints one table of times and ratios from one run on the same simulated 8-h
night and 7-night week (simulator ``sensord.simulate``, Polar H10 profile: RR intervals
+ 50-Hz accelerometer).

* sensord full staging: :func:`sensord.staging.score_night` per night (clean streams,
  ActiGraph counts, RR correction, HR, 5-min HRV per epoch, Walch features, stager with
  HMM smoothing, night metrics).
* sensord exact counts alone: :func:`sensord.staging.motion.counts_from_stream`.
* peer chain: ``agcounts`` counts (60-s epochs) + ``neurokit2`` ``hrv_time`` and
  ``hrv_frequency`` on each epoch's 5-min RR window + Cole-Kripke from
  ``acti-data-analyzer`` (``ada.short.cole_kripke``) on the 60-s counts.

Install the peers with ``pip install -e '.[bench]'`` (acti-data-analyzer pins old numpy
and scipy; install it with ``--no-deps`` if pip would downgrade them). Run:
``python bench/staging.py [--nights 7]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensord.model import AccStream, BeatStream, NightStreams
from sensord.simulate import SimConfig, simulate_night
from sensord.staging import load_model, score_night
from sensord.staging.motion import counts_from_stream


def streams_of(sn: object) -> NightStreams:
    return NightStreams(
        sn.start_ns,  # type: ignore[attr-defined]
        sn.end_ns,  # type: ignore[attr-defined]
        beats=BeatStream(sn.beat_t_ns, sn.rr_ms),  # type: ignore[attr-defined]
        acc=AccStream(sn.acc_t_ns, sn.acc_g),  # type: ignore[attr-defined]
    )


def ours(nights: list[NightStreams]) -> tuple[float, float]:
    model = load_model()
    t0 = time.perf_counter()
    for st in nights:
        score_night(st, tz="Europe/Zurich", model=model)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for st in nights:
        assert st.acc is not None
        counts_from_stream(st.acc)
    return full, time.perf_counter() - t0


def peer(nights: list[NightStreams]) -> float:
    import neurokit2 as nk
    from ada.data_containers.generic import GenericData
    from ada.short.cole_kripke import ColeKripke
    from agcounts.extract import get_counts

    t0 = time.perf_counter()
    for st in nights:
        assert st.acc is not None and st.beats is not None
        counts = get_counts(st.acc.acc_g, freq=50, epoch=60)
        ts = (st.acc.t_ns[0] / 1e9 + 60.0 * np.arange(counts.shape[0]))
        vm = np.sqrt((counts.astype(float) ** 2).sum(axis=1))
        data = GenericData(np.vstack([vm, ts]), {}, 1 / 60, ["counts", "timestamp"],
                           epoching_method_metadata={"to_score channel": 0})
        ColeKripke(threshold=0.001).to_score(data)
        beat_s = (st.beats.t_ns - st.start_ns) / 1e9
        rr = st.beats.rr_ms
        for mid in np.arange(15.0, (st.end_ns - st.start_ns) / 1e9, 30.0):
            sel = (beat_s >= mid - 150) & (beat_s < mid + 150)
            if sel.sum() < 100:
                continue
            win = {"RRI": rr[sel], "RRI_Time": beat_s[sel]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nk.hrv_time(win)
                nk.hrv_frequency(win, interpolation_rate=4)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description="staging speed vs the peer chain")
    ap.add_argument("--nights", type=int, default=7)
    args = ap.parse_args()
    one = [streams_of(simulate_night(SimConfig(seed=1, duration_h=8.0), 0))]
    cfg = SimConfig(seed=2, duration_h=8.0, nights=args.nights)
    week = [streams_of(simulate_night(cfg, k)) for k in range(args.nights)]
    rows = []
    for name, nights in (("8-h night", one), (f"{args.nights}-night week", week)):
        full, counts = ours(nights)
        p = peer(nights)
        rows.append((name, full, counts, p))
    print("| data | sensord full staging (s) | sensord exact counts (s) | peer chain (s) "
          "| peer / full | full / counts |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, full, counts, p in rows:
        print(f"| {name} | {full:.2f} | {counts:.2f} | {p:.1f} | {p / full:.0f}x "
              f"| {full / counts:.2f}x |")
    print(f"(wall seconds, one run; load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
