"""Several wearables at once, one of them streaming garbage and flooding.

A chest strap (Heart Rate), a wrist device (Heart Rate + Polar PMD accelerometer at 50 Hz,
started through the control point) and a junk device that floods malformed Heart Rate
payloads and notifies a characteristic nobody can decode. The junk is counted and logged
once per kind; the two good devices lose nothing; the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from sensord.backoff import BackoffPolicy
from sensord.ble.bumble_transport import BumbleTransport
from sensord.ble.virtual import PMD_DATA, UNKNOWN_CHAR
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions
from sensord.timesource import ScaledClock
from tests.bumble_env import VirtualAirProc, virtual_air  # noqa: F401
from tests.daemon_helpers import LogView, hr_seq, live_count, make_pipeline, wait_until

SPEED = 60.0


class Spec:
    def __init__(self, name: str, address: str, profile: str, role: str,
                 extra_notify: tuple[str, ...] = ()) -> None:
        self.name, self.address, self.profile, self.role = name, address, profile, role
        self.extra_notify = extra_notify


def test_garbage_and_flooding_are_counted_and_do_not_stop_other_devices(
    virtual_air: VirtualAirProc,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual_air.start("chest", speed=SPEED, address="F0:00:00:00:00:01")
    virtual_air.start("wrist", profile="pmd", speed=SPEED, address="F0:00:00:00:00:02",
                      name="Virtual PMD")
    virtual_air.start("junk", profile="garbage", speed=SPEED, address="F0:00:00:00:00:03",
                      name="Junk", flood_hz=400)
    log_path = tmp_path / "night.blelog"
    caplog.set_level(logging.WARNING)

    async def scenario() -> tuple[Daemon, bool, dict[str, np.ndarray]]:
        clock = ScaledClock(speed=SPEED, wall0_ns=1_760_000_010 * 10**9)
        transport = BumbleTransport(virtual_air.hci("central"), clock=clock)
        options = DaemonOptions(supervisor=SupervisorOptions(
            watchdog_s=60, connect_timeout_s=2.0, max_notifications_per_s=5.0,
            backoff=BackoffPolicy(min_s=1.0, max_s=10.0),
        ))
        daemon = Daemon(
            [Spec("chest", "F0:00:00:00:00:01", "heart_rate", "chest"),
             Spec("wrist", "F0:00:00:00:00:02", "polar_pmd", "wrist"),
             Spec("junk", "F0:00:00:00:00:03", "heart_rate", "other",
                  extra_notify=(UNKNOWN_CHAR,))],
            transport, make_pipeline(log_path, clock), clock=clock, options=options, seed=3,
        )
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "wrist", PMD_DATA) >= 100, 20,
                         "accelerometer data from the wrist device")
        await asyncio.sleep(1.0)
        running = not task.done()
        acc = daemon.pipeline.devices["wrist"].get("acc")
        daemon.stop()
        await task
        await transport.close()
        return daemon, running, {"t_ns": acc.t_ns, "acc_g": acc.acc_g}

    daemon, running, acc = asyncio.run(scenario())
    assert running
    log = LogView(log_path)
    # Good devices: every heart-rate frame sent while subscribed is in the log.
    for device in ("chest", "wrist"):
        seqs = [hr_seq(n.payload) for n in log.notes(device)]
        assert len(seqs) >= 60 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # The wrist's accelerometer was started through the control point and decodes at 50 Hz.
    setup = [e.detail for e in log.kinds("wrist") if e.kind == "setup"]
    assert any("start ACC" in d for d in setup)
    assert acc["acc_g"].shape[1] == 3 and acc["acc_g"].shape[0] >= 99 * 36
    # Sample spacing is 20 ms (50 Hz) on the sensor's own clock.
    assert np.median(np.diff(acc["t_ns"])) == pytest.approx(20e6, rel=0.01)
    # Gravity on z: the virtual device put 1000 mg there.
    assert np.median(acc["acc_g"][:, 2]) == pytest.approx(1.0, abs=0.01)
    # Junk: flooding counted by the supervisor, decoding problems by the pipeline.
    assert daemon.problems.as_dict()["junk"]["flooding"] > 10
    assert set(daemon.problems.as_dict()) == {"junk"}, daemon.problems.as_dict()
    by_kind: dict[str, int] = {}
    for p in daemon.pipeline.problems:
        assert p.message.startswith("junk"), p
        by_kind[p.kind] = by_kind.get(p.kind, 0) + p.count
    assert by_kind["decode-error"] > 3 and by_kind["unknown-characteristic"] > 3
    # Logged once per kind.
    for kind in ("flooding", "decode-error", "unknown-characteristic"):
        n_logged = sum(1 for r in caplog.records if kind in r.getMessage())
        assert n_logged == 1, (kind, [r.getMessage() for r in caplog.records])
    # Nothing that passed the flood limit was dropped: the unknown characteristic's
    # notifications are in the session log.
    assert any(n.char_uuid == UNKNOWN_CHAR for n in log.notes("junk", None))
