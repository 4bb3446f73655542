"""The daemon as participants run it: `sensord run` in its own process, killed and restarted.

A virtual strap on the bumble air (TCP HCI), the daemon's clock at 60x. SIGKILL mid-night
leaves a session log that reads back intact up to its last record; a restarted daemon
appends a new session to the same night's log and recording resumes; SIGTERM ends the
session cleanly. `sensord status` and `sensord doctor` are exercised against it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sensord.blelog import Problems, iter_events
from sensord.model import DeviceEvent, RawNotification
from tests.bumble_env import ROOT, VirtualAirProc, virtual_air  # noqa: F401
from tests.daemon_helpers import HR_MEASUREMENT, hr_seq, midnight_tz

SPEED = 60


def status_file(tmp: Path) -> Path:
    """Where the config puts the status file: off the data directory, as the install guide
    does (/run/sensord there; the daemon creates this one, private)."""
    return tmp / "run" / "sensord" / "status.json"


def write_config(tmp: Path, hci: str) -> Path:
    cfg = tmp / "sensord.toml"
    cfg.write_text(
        f'participant_id = "P07"\ntimezone = "{midnight_tz()}"\ndata_dir = "{tmp / "data"}"\n'
        f'[daemon]\ntransport = "bumble:{hci}"\nwatchdog_s = 60\nreconnect_min_s = 2\n'
        f'reconnect_max_s = 30\nconnect_timeout_s = 2\n'
        f'status_file = "{status_file(tmp)}"\n'
        f'[[devices]]\nname = "chest"\naddress = "F0:00:00:00:00:01"\nprofile = "heart_rate"\n'
        f'role = "chest"\n'
    )
    return cfg


def sensord(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sensord", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


def start_daemon(cfg: Path, tmp: Path, n: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "sensord", "run", "-c", str(cfg), "--time-scale", str(SPEED)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=(tmp / f"daemon-{n}.err").open("wb"),
    )


def wait_status(path: Path, pred: object, timeout_s: float = 20) -> dict[str, object]:
    """The first status read from the file ``path`` that satisfies ``pred``."""
    assert not path.is_dir(), f"{path}: wait_status reads the status file, not a directory"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            st = json.loads(path.read_text())
            if pred(st):  # type: ignore[operator]
                return st  # type: ignore[no-any-return]
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("daemon status never satisfied the condition")


def read_log(path: Path) -> tuple[list[object], Problems]:
    problems = Problems()
    return list(iter_events(path, problems)), problems


def test_sigkill_mid_night_then_restart_loses_nothing_logged(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    virtual_air.start("chest", speed=SPEED)
    cfg = write_config(tmp_path, virtual_air.hci("central"))
    data = tmp_path / "data"
    daemon = start_daemon(cfg, tmp_path, 1)
    try:
        wait_status(status_file(tmp_path),
                    lambda st: st["devices"]["chest"]["notifications"] >= 200)
        assert not (data / "status.json").exists()
        assert (status_file(tmp_path).parent.stat().st_mode & 0o777) == 0o700
        status = sensord("status", "-c", str(cfg))
        assert status.returncode == 0, status.stderr
        assert "daemon: running" in status.stdout and "chest [heart_rate" in status.stdout
        assert "connected" in status.stdout and "battery 87%" in status.stdout
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        (log_path,) = list((data / "logs").glob("*.blelog"))
        after_kill, _problems = read_log(log_path)
        seqs_kill = [hr_seq(e.payload) for e in after_kill
                     if isinstance(e, RawNotification) and e.char_uuid == HR_MEASUREMENT]
        # Intact up to the last record: every record read, in order, nothing garbled.
        assert len(seqs_kill) >= 150
        assert seqs_kill == list(range(len(seqs_kill)))
        daemon = start_daemon(cfg, tmp_path, 2)
        wait_status(status_file(tmp_path), lambda st: st["pid"] == daemon.pid
                    and st["devices"]["chest"]["notifications"] >= 100)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    final, _problems = read_log(log_path)
    # Nothing already logged is lost: the killed session's records are all still there.
    assert final[: len(after_kill)] == after_kill
    connects = [e for e in final if isinstance(e, DeviceEvent) and e.kind == "connected"]
    assert len(connects) == 2  # one per daemon session
    resumed = [e for e in final[len(after_kill):]
               if isinstance(e, RawNotification) and e.char_uuid == HR_MEASUREMENT]
    assert len(resumed) >= 100
    # The strap kept counting while the daemon was dead; the new session picks up later.
    assert hr_seq(resumed[0].payload) >= seqs_kill[-1]
    # After SIGTERM the status shows a clean stop (the daemon wrote it on the way out), the
    # night was re-scored from its log in the scoring worker and queued in the outbox.
    st = json.loads(status_file(tmp_path).read_text())
    assert st["devices"]["chest"]["state"] == "stopped"
    assert "host" not in st["problems"], st["problems"]
    assert st["outbox"]["pending_lines"] > 0


def test_doctor_reports_clock_disk_and_transport(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "tcp-client:127.0.0.1:9")
    out = sensord("doctor", "-c", str(cfg))
    assert "transport: bumble:tcp-client:127.0.0.1:9" in out.stdout
    assert "clock: " in out.stdout
    assert f"disk: {tmp_path / 'data'} writable" in out.stdout
    assert "no sink configured" in out.stdout
    assert f"status file: {status_file(tmp_path)} (its directory is created when" in out.stdout


def _bleak_config(tmp: Path, *, with_device: bool) -> Path:
    device = (
        '[[devices]]\nname = "chest"\naddress = "F0:00:00:00:00:01"\n'
        'profile = "heart_rate"\nrole = "chest"\n'
        if with_device
        else ""
    )
    cfg = tmp / "sensord.toml"
    cfg.write_text(
        f'participant_id = "P001"\ndata_dir = "{tmp / "data"}"\n'
        f'[daemon]\ntransport = "bleak"\n{device}'
    )
    return cfg


def test_doctor_fails_on_a_missing_radio_only_when_devices_are_configured(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}"}
    for with_device, expected_rc in ((True, 1), (False, 0)):
        (tmp_path / str(with_device)).mkdir()
        cfg = _bleak_config(tmp_path / str(with_device), with_device=with_device)
        out = subprocess.run(
            [sys.executable, "-m", "sensord", "doctor", "-c", str(cfg)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
        )
        assert "adapter: CANNOT ASK BlueZ over D-Bus" in out.stdout, out.stdout + out.stderr
        assert out.returncode == expected_rc, out.stdout + out.stderr
        assert ("advisory" in out.stdout) is (not with_device)


def test_midnight_tz_puts_the_local_clock_between_one_and_two() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = dt.datetime.now(ZoneInfo(midnight_tz()))
    assert local.hour == 1 or (local.hour == 2 and local.minute == 0)
