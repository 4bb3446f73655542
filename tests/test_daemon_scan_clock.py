"""`sensord scan` / `sensord pair` on the bumble virtual air, and the unsynchronised-clock warning.

The scan test runs the real CLI in its own process against a virtual strap that advertises
the Heart Rate service (``sensord.ble.virtual``): the address, an RSSI in dBm, the
recognised profile and the advertised name must show. ``pair`` then adds the strap to a
config file by that scan, and the file loads with the device in it.

The clock test starts the daemon while the (scaled) system clock reports "not synchronised"
(a Raspberry Pi before NTP): the daemon must say so in its log, in ``sensord status`` and as a
clock event in the session log when synchronisation arrives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensord.ble.bumble_transport import BumbleTransport
from sensord.config import load_config
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions
from sensord.daemon_ops import format_status
from sensord.model import ClockEvent
from sensord.timesource import ScaledClock
from tests.bumble_env import ROOT, VirtualAirProc, virtual_air  # noqa: F401
from tests.daemon_helpers import LogView, live_count, make_pipeline, wait_until

STRAP = "F0:00:00:00:00:01"


def sensord(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sensord", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def _config(tmp: Path, hci: str) -> Path:
    cfg = tmp / "sensord.toml"
    cfg.write_text(f'participant_id = "P07"\ndata_dir = "{tmp / "data"}"\n'
                   f'[daemon]\ntransport = "bumble:{hci}"\n')
    return cfg


def test_scan_lists_the_strap_with_rssi_and_profile_and_pair_adds_it(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    virtual_air.start("chest", address=STRAP, name="Virtual HR")
    cfg = _config(tmp_path, virtual_air.hci("central"))

    scan = sensord("scan", "-c", str(cfg), "--timeout", "3")
    assert scan.returncode == 0, scan.stderr
    (line,) = [ln for ln in scan.stdout.splitlines() if ln.startswith(STRAP)]
    fields = line.split()
    # address, RSSI, unit, profile, name: "F0:..:01  -50 dBm  heart_rate  Virtual HR"
    assert fields[2] == "dBm" and int(fields[1]) < 0
    assert fields[3] == "heart_rate"
    assert line.endswith("Virtual HR")

    pair = sensord("pair", STRAP, "--role", "chest", "-c", str(cfg), "--timeout", "3")
    assert pair.returncode == 0, pair.stderr
    loaded = load_config(cfg)
    assert [(d.name, d.address, d.profile, d.role) for d in loaded.devices] == [
        ("chest", STRAP, "heart_rate", "chest")]
    # The same strap again: refused, saying why, and the file is left as it was.
    before = cfg.read_text()
    again = sensord("pair", STRAP, "--role", "wrist", "-c", str(cfg), "--timeout", "3")
    assert again.returncode != 0
    assert "already configured" in again.stderr
    assert cfg.read_text() == before
    # An address nobody advertises, with no --profile: refused, naming the way out.
    unknown = sensord("pair", "F0:00:00:00:00:09", "-c", str(cfg), "--timeout", "2")
    assert unknown.returncode != 0
    assert "could not recognise F0:00:00:00:00:09" in unknown.stderr
    assert "--profile" in unknown.stderr
    assert cfg.read_text() == before


def test_unsynchronised_clock_is_reported_in_the_log_status_and_session_log(
    virtual_air: VirtualAirProc, tmp_path: Path, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    speed = 60.0
    virtual_air.start("chest", address=STRAP, speed=speed)
    log_path = tmp_path / "night.blelog"
    clock = ScaledClock(speed=speed, wall0_ns=1_760_000_010 * 10**9)
    clock.set_synced(False)  # booted without NTP
    transport = BumbleTransport(virtual_air.hci("central"), clock=clock)

    class Spec:
        name, address, profile, role = "chest", STRAP, "heart_rate", "chest"

    statuses: dict[str, str] = {}

    async def scenario() -> None:
        daemon = Daemon([Spec()], transport, make_pipeline(log_path, clock), clock=clock,
                        options=DaemonOptions(supervisor=SupervisorOptions(
                            watchdog_s=60.0, connect_timeout_s=1.0)), seed=1)
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "chest") >= 30, 20, "notifications")
        statuses["unsynced"] = format_status(daemon.status())
        clock.set_synced(True)  # NTP arrives
        await wait_until(lambda: daemon.status()["clock"]["synced"], 20, "sync seen")
        statuses["synced"] = format_status(daemon.status())
        daemon.stop()
        await task
        await transport.close()

    with caplog.at_level(logging.INFO, logger="sensord"):
        asyncio.run(scenario())

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not synchronised" in m for m in warnings), warnings
    assert "clock: NOT synchronised" in statuses["unsynced"]
    assert "clock: synchronised" in statuses["synced"]
    clock_events = [e for e in LogView(log_path).events if isinstance(e, ClockEvent)]
    assert any(e.synced for e in clock_events), clock_events
