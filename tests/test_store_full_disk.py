"""A really full file system under the local store: a 1 MiB tmpfs mounted by the test.

``tests/test_store_local.py`` covers SQLITE_FULL with SQLite's ``max_page_count``; only a
real full disk shows the rest: the write-ahead log cannot grow, so recording a delivery needs
the store's reserve file. Here a night is queued until the disk is full (a clear error naming
the store and the source), then everything queued is pushed to the real InfluxDB from the
full disk, and new data is accepted afterwards. Mounting needs root (CI and the developers'
machines run as root); elsewhere the test says it cannot run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensord.errors import StoreError
from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        # Not a stub: without root no file system can be mounted; the SQLite-level
        # full-store test in test_store_local.py still runs.
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _lines(start: int, n: int) -> list[str]:
    # ~70 bytes a line, participant/role tags as real points have
    return [f"heart_rate,participant=P-001,device_role=chest hr_bpm={60 + j % 40}.5,seq={j}i "
            f"{1_760_000_000_000_000_000 + j * 1_000_000_000}" for j in range(start, start + n)]


def test_full_disk_is_a_clear_error_and_everything_queued_still_arrives(
    tiny_disk: Path, influxdb: InfluxDB,
) -> None:
    path = tiny_disk / "sensord.sqlite"
    # The store's rule, scaled to a 1 MiB disk: the reserve covers what a checkpoint of the
    # write-ahead log adds to the database (production: 1000 pages of 4 KiB, 4 MiB reserve).
    store = LocalStore(path, reserve_bytes=200_000, wal_checkpoint_pages=40)
    queued = 0
    with pytest.raises(StoreError) as info:
        for i in range(10_000):
            queued += store.add_lines(_lines(i * 100, 100), source="night-2026-11-24")
    msg = str(info.value)
    assert str(path) in msg and "full" in msg and "night-2026-11-24" in msg, msg
    assert queued >= 1000  # a good part of the disk held data before it filled
    assert store.stats().pending_lines == queued  # the failed call added nothing

    report = Sender(store, Influx1Sink(influxdb.url, influxdb.name), batch_lines=500).flush()
    assert report.finished and report.quarantined == 0
    assert store.stats().pending_lines == 0
    # Every line queued before the disk filled is in InfluxDB, with its own value.
    rows = influxdb.rows("heart_rate")
    assert sorted(r["seq"] for r in rows) == list(range(queued))
    assert all(r["hr_bpm"] == 60 + r["seq"] % 40 + 0.5 for r in rows)
    # Space came back: the next night's data is accepted on the same disk.
    assert store.add_lines(_lines(10**6, 1000), source="night-2026-11-25") == 1000
    store.close()
