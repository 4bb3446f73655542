"""Benchmark: session-log loading and batch decoding (issue 2's speed targets).

Simulates a 7-night Polar H10 log (Heart Rate Measurement with RR at 1 Hz and PMD
accelerometer at 50 Hz), then prints, from one run:

* ``load_ratio`` = time of ``pipeline.load_session`` (read, decompress, parse, check,
  decode into arrays) / time of merely reading and decompressing the same file
  (target: <= 3);
* ``batch_speedup`` = time of decoding every notification one by one with
  ``devices.decode_one`` / time of decoding the same notifications with
  ``devices.decode_batch`` in the pipeline's batches (target: >= 20); the figure for one
  call per whole channel is printed beside it.

Usage: ``python bench/decode.py [--nights 7] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path

from sensord import blelog, devices, pipeline
from sensord.simulate import SimConfig, simulate_to_files


def read_and_decompress(path: Path) -> int:
    """Bytes of text in the log: read the file, inflate every gzip member."""
    data = path.read_bytes()
    total = 0
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        total += len(d.decompress(data[pos:]))
        pos = len(data) - len(d.unused_data)
    return total


def best_of(n: int, fn):  # type: ignore[no-untyped-def]
    times = []
    out = None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nights", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings")
    ap.add_argument("--keep", type=Path, help="write the simulated log here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        t0 = time.perf_counter()
        _, logs = simulate_to_files(SimConfig(seed=7, nights=args.nights), out, one_file=True)
        sim_s = time.perf_counter() - t0
        log = logs[0]
        size_mb = log.stat().st_size / 1e6
        t_raw, text_bytes = best_of(args.repeat, lambda: read_and_decompress(log))
        t_load, session = best_of(args.repeat, lambda: pipeline.load_session([log]))
        counts = {f"{d}/{n}": len(ds.get(n)) for d, ds in session.devices.items()
                  for n in ds.names()}
        # batch vs one by one, on the same notifications (decoding only)
        contents = blelog.load(log)
        chans = list(contents.channels.values())
        n_notif = sum(len(c) for c in chans)

        def batch() -> None:  # in the batches the pipeline uses
            step = pipeline.DEFAULT_BATCH
            for c in chans:
                for i in range(0, len(c), step):
                    devices.decode_batch(c.char_uuid, c.payloads[i : i + step],
                                         c.wall_ns[i : i + step])

        def whole() -> None:  # each channel in one call
            for c in chans:
                devices.decode_batch(c.char_uuid, c.payloads, c.wall_ns)

        def one_by_one() -> None:
            for c in chans:
                for p in c.payloads:
                    devices.decode_one(c.char_uuid, p)

        t_batch, _ = best_of(args.repeat, batch)
        t_whole, _ = best_of(args.repeat, whole)
        t_one, _ = best_of(1, one_by_one)
    print(f"simulated {args.nights} nights in {sim_s:.1f} s: {size_mb:.1f} MB on disk "
          f"({size_mb / args.nights:.1f} MB/night), {text_bytes / 1e6:.0f} MB of text, "
          f"{n_notif} notifications")
    print("samples: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"read+decompress      {t_raw:7.3f} s")
    print(f"load_session         {t_load:7.3f} s")
    print(f"decode_batch         {t_batch:7.3f} s  (batches of {pipeline.DEFAULT_BATCH})")
    print(f"decode_batch whole   {t_whole:7.3f} s  (one call per channel)")
    print(f"decode_one x {n_notif:<7d} {t_one:7.3f} s")
    print(f"load_ratio    = {t_load / t_raw:5.2f}  (target <= 3)")
    print(f"batch_speedup = {t_one / t_batch:5.1f}  (target >= 20; whole channels: "
          f"{t_one / t_whole:.1f})")


if __name__ == "__main__":
    main()
