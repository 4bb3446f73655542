"""Load: 100 participants' senders push a night each into one influxd at the same time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB
from tests.storedata import make_night

PARTICIPANTS = 100


def test_hundred_participants_push_a_night_each(influxdb: InfluxDB, tmp_path: Path) -> None:
    def prepare(k: int) -> tuple[str, int, LocalStore]:
        pid = f"P-{k:03d}"
        night = make_night(pid, hours=8.0, seed=k, with_beats=False)
        store = LocalStore(tmp_path / f"{pid}.sqlite", reserve_bytes=0)  # 100 x 4 MiB: no
        store.add_body(night.lines(with_beats=False))
        return pid, int((~np.isnan(night.hr.hr_bpm)).sum()), store

    with ThreadPoolExecutor(8) as pool:
        prepared = list(pool.map(prepare, range(PARTICIPANTS)))
    expected_hr = {pid: n for pid, n, _ in prepared}
    stores = [store for _, _, store in prepared]
    n_epochs = make_night(hours=8.0, with_beats=False).epoch_t_ns.size
    total = sum(expected_hr.values()) + PARTICIPANTS * n_epochs
    assert sum(s.stats().pending_lines for s in stores) == total

    barrier = threading.Barrier(PARTICIPANTS + 1)
    done_s: list[float] = [0.0] * PARTICIPANTS
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            sender = Sender(
                stores[k],
                Influx1Sink(influxdb.url, influxdb.name, timeout_s=60),
                batch_lines=5000,
                batch_bytes=1_000_000,
            )
            barrier.wait()
            report = sender.flush(max_retries=5)
            assert report.finished, report.last_error
            done_s[k] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(PARTICIPANTS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors, errors[:3]
    slowest = max(done_s) - t0
    print(
        f"\nload: {PARTICIPANTS} participants, {total} points in {elapsed:.1f} s = "
        f"{total / elapsed:,.0f} points/s; slowest participant done after {slowest:.1f} s"
    )
    for store in stores:
        assert store.stats().pending_lines == 0 and store.stats().quarantined == 0
        store.close()
    got = influxdb.query("SELECT COUNT(hr_bpm) FROM heart_rate GROUP BY participant").rows()
    assert {r["participant"]: r["count"] for r in got} == expected_hr
    ep = influxdb.query("SELECT COUNT(stage_code) FROM epoch GROUP BY participant").rows()
    assert {r["participant"]: r["count"] for r in ep} == dict.fromkeys(expected_hr, n_epochs)
