"""Outage and crash: every point arrives exactly once, with equal values (real influxd)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np

from sensord.model import HeartRateStream
from sensord.store import points
from sensord.store.local import LocalStore
from sensord.store.policy import Backoff
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB, running_server
from tests.storedata import make_night


def test_long_outage_during_a_night(tmp_path: Path) -> None:
    """The daemon queues a night in 16 half-hour slices and flushes after each; the server
    is down from slice 3 to slice 13 (5 h), then comes back."""
    night = make_night(hours=8.0, seed=11)
    hr_ok = ~np.isnan(night.hr.hr_bpm)
    slices = np.array_split(np.arange(len(night.hr)), 16)
    with running_server() as server, LocalStore(tmp_path / "s.sqlite") as store:
        server.create_database("sleep")
        slept: list[float] = []
        sender = Sender(
            store,
            Influx1Sink(server.url, "sleep", timeout_s=2),
            batch_lines=5000,
            backoff=Backoff(initial_s=1, max_s=300, rand=random.Random(1).random),
            sleep=slept.append,
        )
        for k, idx in enumerate(slices):
            if k == 3:
                server.stop()
            if k == 13:
                server.start()
            store.add_body(
                points.heart_rate_lines(
                    night.participant,
                    "chest",
                    HeartRateStream(night.hr.t_ns[idx], night.hr.hr_bpm[idx]),
                )
            )
            report = sender.flush(max_retries=2)
            assert report.finished == (not 3 <= k < 13)
            if not report.finished:
                assert "no answer from http://127.0.0.1" in report.last_error
        assert len(slept) == 2 * 10  # two backed-off retries per failed flush, no storm
        assert all(0.5 <= s <= 2.0 for s in slept)  # 1 s and 2 s nominal, 50 % jitter
        store.add_body(
            points.epoch_lines(
                night.participant,
                "synthetic@1",
                night.epoch_t_ns,
                night.stage_code,
                night.proba,
                final=True,
                night=night.night,
            )
        )
        assert sender.flush().finished
        rows = server.query("SELECT hr_bpm FROM heart_rate", db="sleep").rows()
        assert [r["time"] for r in rows] == night.hr.t_ns[hr_ok].tolist()
        assert [r["hr_bpm"] for r in rows] == night.hr.hr_bpm[hr_ok].tolist()
        ep = server.query("SELECT COUNT(stage_code) FROM epoch", db="sleep").rows()
        assert ep[0]["count"] == night.epoch_t_ns.size
        assert store.stats().pending_lines == 0 and store.stats().quarantined == 0


def _child_flush(path: Path, url: str, db: str) -> None:  # pragma: no cover - runs in a fork
    try:
        with LocalStore(path) as store:
            Sender(
                store,
                Influx1Sink(url, db),
                batch_lines=100,
                batch_bytes=8000,
                backoff=Backoff(initial_s=0.01, max_s=0.05),
            ).flush(max_retries=None)
    finally:
        os._exit(0)


def test_sigkill_sender_at_random_moments(influxdb: InfluxDB, tmp_path: Path) -> None:
    """>= 50 SIGKILLs of the sending process, each at a random moment of a flush."""
    rng = random.Random(2024)
    path = tmp_path / "s.sqlite"
    t0 = 1_764_021_600_000_000_000
    expected: dict[int, float] = {}
    next_i = 0

    def add(n: int) -> None:
        nonlocal next_i
        t = t0 + np.arange(next_i, next_i + n, dtype=np.int64) * 250_000_000
        hr = np.round(40 + (np.arange(next_i, next_i + n) % 1000) * 0.1, 1)
        with LocalStore(path) as store:
            store.add_body(points.heart_rate_lines("P-kill", "chest", HeartRateStream(t, hr)))
        expected.update(zip(t.tolist(), hr.tolist(), strict=True))
        next_i += n

    add(3000)
    kills = mid_flush = 0
    start = time.monotonic()
    while kills < 50:
        with LocalStore(path) as store:
            before = store.stats().pending_lines
        if before < 6000:
            add(12000)
            before += 12000
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _child_flush(path, influxdb.url, influxdb.name)
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills += 1
            with LocalStore(path) as store:
                after = store.stats().pending_lines
            assert after > 0  # the child was still flushing when it died
            mid_flush += after < before
    elapsed = time.monotonic() - start
    # every kill hit a live sender with lines pending; many after it had delivered some
    # batches (the others died inside their first request, between send and accept)
    print(f"\nkills: {kills}, of which after progress: {mid_flush}")
    assert mid_flush >= 5, (kills, mid_flush)
    with LocalStore(path) as store:
        assert Sender(store, Influx1Sink(influxdb.url, influxdb.name)).flush().finished
        assert store.stats().quarantined == 0
    rows = influxdb.rows("heart_rate")
    assert len(rows) == len(expected)  # none lost, none extra
    assert {r["time"]: r["hr_bpm"] for r in rows} == expected
    assert elapsed < 60
