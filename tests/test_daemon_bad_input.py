"""Several wearables at once, one of them streaming garbage and flooding.

A chest strap (Heart Rate), a wrist device (Heart Rate + Polar PMD accelerometer at 50 Hz,
started through the control point) and a junk device that floods malformed Heart Rate
payloads and notifies a characteristic nobody knows. The junk is counted and logged once
per kind; the two good devices lose nothing.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from bumble_env import VirtualAirProc, virtual_air  # noqa: F401
from daemon_helpers import MemoryRecorder, hr_seq, wait_until

from sensord.backoff import BackoffPolicy
from sensord.ble.bumble_transport import BumbleTransport
from sensord.ble.virtual import PMD_DATA, UNKNOWN_CHAR
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions
from sensord.timesource import ScaledClock

SPEED = 60.0


class Spec:
    def __init__(self, name: str, address: str, profile: str,
                 extra_notify: tuple[str, ...] = ()) -> None:
        self.name, self.address, self.profile = name, address, profile
        self.extra_notify = extra_notify


def test_garbage_and_flooding_are_counted_and_do_not_stop_other_devices(
    virtual_air: VirtualAirProc,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual_air.start("chest", speed=SPEED, address="F0:00:00:00:00:01")
    virtual_air.start("wrist", profile="pmd", speed=SPEED, address="F0:00:00:00:00:02",
                      name="Virtual PMD")
    virtual_air.start("junk", profile="garbage", speed=SPEED, address="F0:00:00:00:00:03",
                      name="Junk", flood_hz=400)
    rec = MemoryRecorder()
    caplog.set_level(logging.WARNING, logger="sensord.daemon")

    async def scenario() -> tuple[Daemon, bool]:
        clock = ScaledClock(speed=SPEED, wall0_ns=1_760_000_010 * 10**9)
        transport = BumbleTransport(virtual_air.hci("central"), clock=clock)
        options = DaemonOptions(supervisor=SupervisorOptions(
            watchdog_s=60, connect_timeout_s=2.0, max_notifications_per_s=5.0,
            backoff=BackoffPolicy(min_s=1.0, max_s=10.0),
        ))
        daemon = Daemon(
            [Spec("chest", "F0:00:00:00:00:01", "heart_rate"),
             Spec("wrist", "F0:00:00:00:00:02", "polar_pmd"),
             Spec("junk", "F0:00:00:00:00:03", "heart_rate", extra_notify=(UNKNOWN_CHAR,))],
            transport, rec, clock=clock, options=options, seed=3,
        )
        task = asyncio.ensure_future(daemon.run())
        await wait_until(
            lambda: len(rec.notes("wrist", PMD_DATA)) >= 100,
            20, "accelerometer data from the wrist device",
        )
        await asyncio.sleep(1.0)
        running = not task.done()
        daemon.stop()
        await task
        await transport.close()
        return daemon, running

    daemon, running = asyncio.run(scenario())
    assert running
    # Good devices: every heart-rate frame sent while subscribed is in the record.
    for device in ("chest", "wrist"):
        seqs = [hr_seq(n.payload) for n in rec.notes(device)]
        assert len(seqs) >= 60 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # The wrist's accelerometer was started through the control point and decodes at 50 Hz.
    setup = [e.detail for e in rec.kinds("wrist") if e.kind == "setup"]
    assert any("start ACC" in d for d in setup)
    acc = np.concatenate([c.acc_g for c in daemon.decoder.stream("wrist", "acc")])
    t = np.concatenate([c.t_ns for c in daemon.decoder.stream("wrist", "acc")])
    assert acc.shape[1] == 3 and acc.shape[0] >= 100 * 36 - 36
    # Device sample spacing is 20 ms (50 Hz), from the sensor's own clock.
    assert np.median(np.diff(t)) == pytest.approx(20e6, rel=0.01)
    # Gravity on z: the encoder put 1000 mg there.
    assert np.median(acc[:, 2]) == pytest.approx(1.0, abs=0.01)
    # Junk: counted per kind, logged once per kind.
    counts = daemon.problems.as_dict()["junk"]
    assert counts["flooding"] > 10
    assert counts["unknown characteristic"] > 3
    malformed = [k for k in counts if k.startswith("malformed")]
    assert malformed and all(counts[k] > 1 for k in malformed)
    assert "chest" not in daemon.problems.as_dict()
    assert "wrist" not in daemon.problems.as_dict()
    for kind in counts:
        n_logged = sum(1 for r in caplog.records if r.getMessage().startswith(f"junk: {kind} "))
        assert n_logged == 1, (kind, n_logged)
    # The unknown characteristic's notifications are still in the session log.
    assert any(n.char_uuid == UNKNOWN_CHAR for n in rec.notes("junk", None))
