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
import os
import statistics
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


def cpu_time(fn):  # type: ignore[no-untyped-def]
    """(CPU seconds of this process, wall seconds, result) of one call.

    CPU time is what the ratios use: the build machine is shared, and wall time there
    mostly measures the other processes.
    """
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nights", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds (median)")
    ap.add_argument("--keep", type=Path, help="write the simulated log here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        sim_c, sim_s, (_, logs) = cpu_time(
            lambda: simulate_to_files(SimConfig(seed=7, nights=args.nights), out, one_file=True))
        log = logs[0]
        size_mb = log.stat().st_size / 1e6
        # interleaved rounds; each ratio is the median over rounds
        raw_c, load_c, raw_w, load_w = [], [], [], []
        text_bytes = 0
        session = None
        for _ in range(args.repeat):
            c, w, text_bytes = cpu_time(lambda: read_and_decompress(log))
            raw_c.append(c)
            raw_w.append(w)
            c, w, session = cpu_time(lambda: pipeline.load_session([log]))
            load_c.append(c)
            load_w.append(w)
        assert session is not None
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

        batch_c = [cpu_time(batch)[0] for _ in range(args.repeat)]
        whole_c = [cpu_time(whole)[0] for _ in range(args.repeat)]
        one_c, one_w, _ = cpu_time(one_by_one)
    med = statistics.median
    load_ratio = med(lc / rc for lc, rc in zip(load_c, raw_c, strict=True))
    print(f"simulated {args.nights} nights in {sim_c:.1f} CPU s [{sim_s:.1f} s wall]: "
          f"{size_mb:.1f} MB on disk "
          f"({size_mb / args.nights:.1f} MB/night), {text_bytes / 1e6:.0f} MB of text, "
          f"{n_notif} notifications")
    print("samples: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    load1 = os.getloadavg()[0]
    print(f"CPU seconds (median of {args.repeat}; wall in brackets; load average {load1:.1f}):")
    print(f"  read+decompress      {med(raw_c):7.3f}  [{med(raw_w):.3f}]")
    print(f"  load_session         {med(load_c):7.3f}  [{med(load_w):.3f}]")
    print(f"  decode_batch         {med(batch_c):7.3f}  (batches of {pipeline.DEFAULT_BATCH})")
    print(f"  decode_batch whole   {med(whole_c):7.3f}  (one call per channel)")
    print(f"  decode_one x {n_notif:<7d} {one_c:7.3f}  [{one_w:.3f}]")
    print(f"load_ratio    = {load_ratio:5.2f}  (target <= 3)")
    print(f"batch_speedup = {one_c / med(batch_c):5.1f}  (target >= 20; whole channels: "
          f"{one_c / med(whole_c):.1f})")

if __name__ == "__main__":
    main()
