"""Operations around the daemon: sd_notify, journald lines, pairing, night logs, log upkeep."""

from __future__ import annotations

import asyncio
import json
import logging
import lzma
import os
import socket
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sensord.ble.bumble_transport import BumbleTransport
from sensord.blelog import BlelogWriter, iter_events
from sensord.config import load_config
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions, sd_notify, watchdog_interval_s
from sensord.daemon_ops import (
    JournalFormatter,
    daemon_options,
    ensure_status_dir,
    in_morning,
    maintain_logs,
    night_label,
    pair,
    session_log_path,
)
from sensord.errors import ConfigError
from sensord.pipeline import Pipeline
from sensord.timesource import ScaledClock
from tests.bumble_env import VirtualAirProc, virtual_air  # noqa: F401
from tests.daemon_helpers import live_count, wait_until


def test_sd_notify_sends_one_datagram_to_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert sd_notify("READY=1\nSTATUS=recording", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(4096) == b"READY=1\nSTATUS=recording"
    assert not sd_notify("READY=1", {})  # not under systemd: nothing to do
    # WatchdogSec=120 -> WATCHDOG_USEC=120000000 -> ping every 60 s
    assert watchdog_interval_s({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}) is None


def test_journal_lines_carry_syslog_priorities() -> None:
    rec = logging.LogRecord("sensord.daemon", logging.WARNING, __file__, 1, "chest: %s", ("x",),
                            None)
    assert JournalFormatter(journal=True).format(rec) == "<4>sensord.daemon: chest: x"
    assert JournalFormatter(journal=False).format(rec).endswith(" warning sensord.daemon: chest: x")


def test_pair_appends_a_device_that_the_config_then_loads(tmp_path: Path) -> None:
    cfg_path = tmp_path / "sensord.toml"
    cfg_path.write_text('participant_id = "P01"\n')
    cfg = load_config(cfg_path)
    pair(cfg_path, cfg, "aa:bb:cc:dd:ee:01", role="chest", name=None, profile="heart_rate")
    cfg = load_config(cfg_path)
    (dev,) = cfg.devices
    assert (dev.name, dev.address, dev.profile, dev.role) == (
        "chest", "AA:BB:CC:DD:EE:01", "heart_rate", "chest")
    with pytest.raises(ConfigError, match="already configured"):
        pair(cfg_path, cfg, "AA:BB:CC:DD:EE:01", role="wrist", name="w", profile="heart_rate")
    with pytest.raises(ConfigError, match="not a Bluetooth address"):
        pair(cfg_path, cfg, "nonsense", role="wrist", name="w", profile="heart_rate")
    with pytest.raises(ConfigError, match="could not recognise"):
        pair(cfg_path, cfg, "AA:BB:CC:DD:EE:02", role="wrist", name="w", profile=None, seen=[])


def test_night_label_follows_the_configured_night_end(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text('timezone = "Europe/Berlin"\n[night]\nend = "12:00"\n')
    cfg = load_config(cfg_path)
    z = ZoneInfo("Europe/Berlin")

    def ns(s: str) -> int:
        return int(datetime.fromisoformat(s).replace(tzinfo=z).timestamp()) * 10**9

    assert night_label(ns("2026-03-28T23:30"), cfg) == "2026-03-28"
    assert night_label(ns("2026-03-29T03:30"), cfg) == "2026-03-28"  # DST night
    assert night_label(ns("2026-03-29T11:59"), cfg) == "2026-03-28"
    assert night_label(ns("2026-03-29T12:00"), cfg) == "2026-03-29"
    # Morning = midnight to the night's end (18:00-12:00 wraps midnight), local time.
    assert not in_morning(ns("2026-03-28T23:30"), cfg)
    assert in_morning(ns("2026-03-29T00:00"), cfg)
    assert in_morning(ns("2026-03-29T07:15"), cfg)
    assert not in_morning(ns("2026-03-29T12:00"), cfg)
    day = load_config(_write(tmp_path / "d.toml", 'timezone = "Europe/Berlin"\n'
                             '[night]\nstart = "08:00"\nend = "16:00"\n'))
    assert not in_morning(ns("2026-03-29T11:59"), day)  # day sleep: second half 12-16 h
    assert in_morning(ns("2026-03-29T12:00"), day)
    assert not in_morning(ns("2026-03-29T16:00"), day)


def test_the_provisional_cadence_is_a_daemon_setting(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path}"\n')
    assert daemon_options(load_config(cfg_path)).provisional_every_s == 30.0
    cfg_path.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nprovisional_every_s = 300\n')
    assert daemon_options(load_config(cfg_path)).provisional_every_s == 300.0
    for bad in ("10", "0", "86400"):
        cfg_path.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nprovisional_every_s = {bad}\n')
        with pytest.raises(ConfigError, match=r"daemon\.provisional_every_s"):
            load_config(cfg_path)


def test_the_status_file_can_live_off_the_data_directory(tmp_path: Path) -> None:
    """Default ``<data_dir>/status.json``; ``[daemon] status_file`` moves it (the install
    guide: /run/sensord, tmpfs). Its directory is created private like the data
    directory; one that cannot be created or that others can read is refused, naming the
    key, before anything is recorded."""
    cfg_path = tmp_path / "c.toml"
    data = tmp_path / "data"
    cfg_path.write_text(f'data_dir = "{data}"\n')
    assert daemon_options(load_config(cfg_path)).status_path == data / "status.json"
    run = tmp_path / "run" / "sensord"
    cfg_path.write_text(f'data_dir = "{data}"\n[daemon]\nstatus_file = "{run}/status.json"\n')
    cfg = load_config(cfg_path)
    assert daemon_options(cfg).status_path == run / "status.json"
    assert ensure_status_dir(cfg) == run
    assert (run.stat().st_mode & 0o777) == 0o700
    run.chmod(0o755)
    with pytest.raises(ConfigError, match=r"status directory .* chmod 700") as refused:
        ensure_status_dir(cfg)
    assert refused.value.key == "daemon.status_file"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg_path.write_text(f'data_dir = "{data}"\n[daemon]\nstatus_file = "{blocker}/run/s.json"\n')
    with pytest.raises(ConfigError, match=r"cannot create") as failed:
        ensure_status_dir(load_config(cfg_path))
    assert failed.value.key == "daemon.status_file"
    for bad in ("status.json", "run/status.json", f"{run}/"):
        cfg_path.write_text(f'data_dir = "{data}"\n[daemon]\nstatus_file = "{bad}"\n')
        with pytest.raises(ConfigError, match=r"daemon\.status_file"):
            load_config(cfg_path)


def test_old_logs_are_compressed_and_deleted_only_once_pushed(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path}"\n[daemon]\ncompress_after_days = 7\n'
                        'log_retention_days = 30\n')
    cfg = load_config(cfg_path)
    day = 86_400 * 10**9
    now = 1_760_000_000 * 10**9
    logs = tmp_path / "logs"
    logs.mkdir()
    ages = {"fresh": 1, "old": 10, "ancient": 40}
    raw = {}
    for name, age in ages.items():
        p = logs / f"p_{name}.blelog"
        w = BlelogWriter(p, participant="p", tz="UTC", host="h", wall_ns=now, mono_ns=1,
                         fsync=False)
        w.close()
        raw[name] = p.read_bytes()
        os.utime(p, ns=(now - age * day, now - age * day))
    actions = maintain_logs(cfg, now_ns=now, pushed=False)
    assert sorted(a.split()[1] for a in actions) == ["p_ancient.blelog", "p_old.blelog"]
    assert (logs / "p_fresh.blelog").exists()
    # Compressed losslessly (xz round trip), originals gone, nothing deleted while unpushed.
    assert lzma.decompress((logs / "p_old.blelog.xz").read_bytes()) == raw["old"]
    assert (logs / "p_ancient.blelog.xz").exists()
    assert maintain_logs(cfg, now_ns=now, pushed=False) == []
    # Everything pushed: the log past the retention age is deleted, the rest kept.
    assert maintain_logs(cfg, now_ns=now, pushed=True) == [
        "deleted p_ancient.blelog.xz (older than 30 days, everything pushed)"]
    assert (logs / "p_old.blelog.xz").exists()


def test_daemon_rotates_to_a_new_log_at_the_night_boundary_and_scores_the_old_one(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    speed = 60.0
    virtual_air.start("chest", profile="pmd", speed=speed)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'participant_id = "P01"\ntimezone = "UTC"\ndata_dir = "{tmp_path}"\n'
                        '[night]\nend = "12:00"\n')
    cfg = load_config(cfg_path)
    start = int(datetime.fromisoformat("2026-11-21T11:55:00+00:00").timestamp()) * 10**9
    clock = ScaledClock(speed=speed, wall0_ns=start)
    first = session_log_path(cfg, start)
    first.parent.mkdir(parents=True)
    opened: list[Path] = [first]

    def writer(path: Path) -> BlelogWriter:
        wall, mono = clock.read()
        return BlelogWriter(path, participant="p1", tz="UTC", host="t", wall_ns=wall,
                            mono_ns=mono, fsync=False)

    def rotate(now_ns: int) -> BlelogWriter | None:
        path = session_log_path(cfg, now_ns)
        if path == opened[-1]:
            return None
        opened.append(path)
        return writer(path)

    class Spec:
        name, address, profile, role = "chest", "F0:00:00:00:00:01", "polar_pmd", "chest"

    async def run() -> Daemon:
        transport = BumbleTransport(virtual_air.hci("central"), clock=clock)
        daemon = Daemon([Spec()], transport, Pipeline(writer=writer(first), batch_size=16),
                        clock=clock, rotate=rotate, participant="p1", tz="UTC",
                        options=DaemonOptions(supervisor=SupervisorOptions(connect_timeout_s=2),
                                              rescore_on_stop=False))
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: len(opened) == 2, 30, "the night boundary")
        n = live_count(daemon, "chest")
        await wait_until(lambda: live_count(daemon, "chest") > n + 60, 10, "data in the new log")
        await wait_until(lambda: bool(daemon.final_results), 30, "the old night's score")
        daemon.stop()
        await task
        await transport.close()
        return daemon

    daemon = asyncio.run(run())
    assert [p.name for p in opened] == ["P01_2026-11-20.blelog", "P01_2026-11-21.blelog"]
    assert daemon.final_results[0]["night"] == "2026-11-20"
    # Both logs are complete sessions; the second one holds data after noon.
    noon = int(datetime.fromisoformat("2026-11-21T12:00:00+00:00").timestamp()) * 10**9
    old = [e.wall_ns for e in iter_events(opened[0]) if hasattr(e, "payload")]
    new = [e.wall_ns for e in iter_events(opened[1]) if hasattr(e, "payload")]
    assert old and new and max(old) < noon + 60 * 10**9 <= max(new)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class _Strap:
    """A configured device (the supervisor's spec) for daemons built without a radio."""

    name, address, profile, role = "strap", "00:00:00:00:00:00", "heart_rate", "chest"


@pytest.mark.parametrize("span_s", [0, 3 * 3600, 12 * 3600 + 60, 14 * 3600])
def test_status_counts_the_epochs_with_data_of_the_last_12_hours(tmp_path: Path,
                                                                 span_s: int) -> None:
    """``epochs_with_data_12h``: the 30-s epochs with data that start no earlier than 12 h
    before the status is written (counted by hand: the epoch grid is at whole 30 s), and
    status.json holds what ``status()`` gives."""
    from sensord.timesource import RecordClock

    now = 1_795_211_130 * 10**9 + 7 * 10**9  # 7 s into an epoch
    clock = RecordClock(now, 10**12)
    daemon = Daemon([_Strap()], transport=None,  # type: ignore[arg-type]  # no radio
                    pipeline=Pipeline(writer=None), clock=clock,
                    options=DaemonOptions(status_path=tmp_path / "status.json"))
    epoch_s = 30
    newest = (now // 10**9) // epoch_s
    n = span_s // epoch_s
    daemon.supervisors[0].status.epochs_with_data = {newest - k for k in range(n)}
    # the epoch starting at now - 12 h + 23 s is the oldest inside (7 s in + 23 s = 30 s)
    oldest_inside = (now // 10**9 - 12 * 3600 + 23) // epoch_s
    expected = len([k for k in range(n) if newest - k >= oldest_inside])
    assert expected == (min(n, 12 * 3600 // epoch_s))  # every epoch of the last 12 h
    st = daemon.status()
    assert st["devices"]["strap"]["epochs_with_data_12h"] == expected
    daemon.write_status()
    written = json.loads((tmp_path / "status.json").read_text())
    assert written["devices"] == st["devices"] and written["written_wall_ns"] == now
    assert not (tmp_path / "status.tmp").exists()
    # the epoch tick forgets epochs that start more than 12 h ago (the one holding that
    # instant stays): 1,440 epochs plus the one begun 7 s before the tick 12 h ago
    daemon.epoch_tick()
    kept = daemon.supervisors[0].status.epochs_with_data
    assert kept == {newest - k for k in range(min(n, 12 * 3600 // epoch_s + 1))}


def test_a_status_file_that_cannot_be_written_is_counted_and_recording_goes_on(
        tmp_path: Path) -> None:
    """Its directory removed (or the disk full): ``write_status`` counts a host problem
    (logged once) instead of raising into the daemon's housekeeping, and writes again,
    with the count, once it can."""
    from sensord.timesource import RecordClock

    run = tmp_path / "run"
    run.mkdir()
    daemon = Daemon([_Strap()], transport=None,  # type: ignore[arg-type]  # no radio
                    pipeline=Pipeline(writer=None), clock=RecordClock(10**18, 10**12),
                    options=DaemonOptions(status_path=run / "status.json"))
    daemon.write_status()
    assert json.loads((run / "status.json").read_text())["problems"] == {}
    (run / "status.json").unlink()
    run.rmdir()
    daemon.write_status()
    daemon.write_status()
    assert daemon.problems.counts[("host", "status not written")] == 2
    run.mkdir()
    daemon.write_status()
    written = json.loads((run / "status.json").read_text())
    assert written["problems"] == {"host": {"status not written": 2}}


def test_housekeeping_that_dies_says_why_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in an epoch tick stops the housekeeping (and so the watchdog pings, which
    lets systemd restart the daemon): the traceback is logged when it happens, not lost
    in a task nobody awaits until the stop."""
    calls = []

    def buggy_hook(_daemon: Daemon, _now_ns: int) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("planted bug in the epoch hook")

    async def night() -> None:
        clock = ScaledClock(speed=600.0, wall0_ns=1_760_000_010 * 10**9)
        daemon = Daemon([], transport=None,  # type: ignore[arg-type]  # no devices, no radio
                        pipeline=Pipeline(writer=None), clock=clock, options=DaemonOptions(),
                        on_epoch=buggy_hook)
        runner = asyncio.ensure_future(daemon.run())
        for _ in range(200):
            if "housekeeping stopped" in caplog.text:
                break
            await asyncio.sleep(0.05)
        daemon.stop()
        await runner

    with caplog.at_level(logging.ERROR, logger="sensord.daemon"):
        asyncio.run(night())
    (record,) = [r for r in caplog.records if "housekeeping stopped" in r.getMessage()]
    assert record.exc_info is not None and "planted bug" in str(record.exc_info[1])
