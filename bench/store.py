"""Store benchmarks: ratios from one run (no timed tests; see docs/storage.md).

1. Backfill throughput vs the server's own ceiling. A simulated week (7 nights of 1-Hz heart
   rate, RR intervals and 30-s epochs, ~400k points) is backfilled through sensord's path
   (columnar encoding -> Sender.send_now -> InfluxDB 1.x sink) into a real ``influxd``
   started here; the ceiling is the same server fed the same points pre-serialised, in the
   same batches, by a minimal client (1 and 2 connections). Rounds alternate; each figure
   is the best of its rounds (the machine is shared, so the best is the least disturbed).
2. Columnar serialisation vs influxdb-client ``Point`` for the same points (one night),
   with byte-identical output checked.

Usage: ``python bench/store.py [--rounds N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import urllib3  # noqa: E402
from influxdb_client import Point  # noqa: E402

from sensord.store.local import LocalStore, split_lines  # noqa: E402
from sensord.store.sender import Sender  # noqa: E402
from sensord.store.sinks import Influx1Sink  # noqa: E402
from tests.influx import InfluxServer, running_server  # noqa: E402
from tests.storedata import NIGHT_START_NS, Night, make_night  # noqa: E402

BATCH_LINES = 5000


def week() -> list[Night]:
    return [
        make_night(
            "P-001",
            hours=8.0,
            seed=i,
            start_ns=NIGHT_START_NS + i * 86_400 * 10**9,
            night=f"2025-11-{24 + i:02d}",
        )
        for i in range(7)
    ]


def ceiling(
    server: InfluxServer, db: str, batches: list[bytes], n: int, conns: int, gz: bool = False
) -> float:
    """Points/s of the server fed pre-serialised (``gz``: pre-compressed) batches by
    ``conns`` minimal clients."""
    server.create_database(db)
    pool = urllib3.PoolManager(maxsize=conns)
    url = f"{server.url}/write?db={db}&precision=n"
    headers = {"Content-Encoding": "gzip"} if gz else {}
    todo = iter(batches)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            assert pool.request("POST", url, body=body, headers=headers).status == 204

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - t0)


def backfill(server: InfluxServer, db: str, nights: list[Night], n: int, gzip_body: bool) -> float:
    """Points/s of sensord's backfill path, encoding included."""
    server.create_database(db)
    with tempfile.TemporaryDirectory() as tmp, LocalStore(Path(tmp) / "s.sqlite") as store:
        sender = Sender(
            store,
            Influx1Sink(server.url, db, gzip_body=gzip_body),
            batch_lines=BATCH_LINES,
            batch_bytes=2_000_000,
        )
        t0 = time.perf_counter()
        for night in nights:
            report = sender.send_now(night.lines(), source=night.night)
            assert report.finished and report.quarantined == 0, report
        seconds = time.perf_counter() - t0
    got = server.query("SELECT COUNT(hr_bpm) FROM heart_rate", db=db).rows()[0]["count"]
    assert got == sum(int((~__import__("numpy").isnan(x.hr.hr_bpm)).sum()) for x in nights)
    return n / seconds


def serialisation(night: Night, rounds: int) -> tuple[float, float]:
    """Best µs/point of Point and of the columnar path for one night (same bytes)."""
    import numpy as np

    hr_ok = ~np.isnan(night.hr.hr_bpm)
    rows = list(zip(night.hr.t_ns[hr_ok].tolist(), night.hr.hr_bpm[hr_ok].tolist(), strict=True))
    beats = list(zip(night.beats.t_ns.tolist(), night.beats.rr_ms.tolist(), strict=True))
    names = {-1: "unscored", 0: "wake", 1: "light", 2: "deep", 3: "rem"}
    epochs = []
    for t, code, p in zip(
        night.epoch_t_ns.tolist(), night.stage_code.tolist(), night.proba.tolist(), strict=True
    ):
        fields = {"stage": names[code], "stage_code": code, "final": True, "night": night.night}
        if not np.isnan(p[0]):
            fields.update(p_wake=p[0], p_light=p[1], p_deep=p[2], p_rem=p[3])
        epochs.append((t, fields))
    n = len(rows) + len(beats) + len(epochs)

    def with_point() -> bytes:
        out = []
        for t, v in rows:
            out.append(
                Point("heart_rate")
                .tag("participant", night.participant)
                .tag("device_role", "chest")
                .field("hr_bpm", v)
                .time(t)
                .to_line_protocol()
            )
        for t, v in beats:
            out.append(
                Point("beat")
                .tag("participant", night.participant)
                .tag("device_role", "chest")
                .field("rr_ms", v)
                .time(t)
                .to_line_protocol()
            )
        for t, f in epochs:
            p = Point("epoch").tag("participant", night.participant).tag("scorer", "synthetic@1")
            for k, v in f.items():
                p.field(k, v)
            out.append(p.time(t).to_line_protocol())
        return ("\n".join(out) + "\n").encode()

    best_point = best_cols = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        ref = with_point()
        best_point = min(best_point, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = night.lines()
        best_cols = min(best_cols, time.perf_counter() - t0)
        assert ours == ref, "columnar output differs from influxdb-client Point"
    return best_point / n * 1e6, best_cols / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nights = week()
    bodies = [x.lines() for x in nights]
    n = sum(b.count(b"\n") for b in bodies)
    lines = [line for b in bodies for line in split_lines(b)]
    batches = [b"".join(lines[i : i + BATCH_LINES]) for i in range(0, len(lines), BATCH_LINES)]
    gz_batches = [gzip.compress(b, compresslevel=1, mtime=0) for b in batches]
    print(
        f"simulated week: {len(nights)} nights, {n} points, {len(batches)} batches of "
        f"{BATCH_LINES} lines; {args.rounds} alternating rounds, best of each"
    )
    best: dict[str, float] = {}
    with running_server() as server:
        for r in range(args.rounds):
            for key, fn in (
                ("ceiling, 1 connection", lambda r=r: ceiling(server, f"c1_{r}", batches, n, 1)),
                ("ceiling, 2 connections", lambda r=r: ceiling(server, f"c2_{r}", batches, n, 2)),
                (
                    "ceiling, pre-gzipped",
                    lambda r=r: ceiling(server, f"cg_{r}", gz_batches, n, 1, gz=True),
                ),
                ("backfill, gzip off", lambda r=r: backfill(server, f"bp_{r}", nights, n, False)),
                ("backfill, gzip on", lambda r=r: backfill(server, f"bg_{r}", nights, n, True)),
            ):
                best[key] = max(best.get(key, 0.0), fn())
    top = max(best["ceiling, 1 connection"], best["ceiling, 2 connections"])
    for key, value in best.items():
        print(f"  {key:24s} {value:10,.0f} points/s")
    gz_top = best["ceiling, pre-gzipped"]
    print(
        f"backfill / server ceiling: gzip off {best['backfill, gzip off'] / top:.0%} "
        f"(target >= 70%); gzip on {best['backfill, gzip on'] / top:.0%} of it, "
        f"{best['backfill, gzip on'] / gz_top:.0%} of the pre-gzipped ceiling"
    )
    point_us, cols_us = serialisation(nights[0], args.rounds)
    print(
        f"serialisation: influxdb-client Point {point_us:.2f} us/point, columnar "
        f"{cols_us:.3f} us/point: {point_us / cols_us:.1f}x faster (target >= 10x)"
    )


if __name__ == "__main__":
    main()
