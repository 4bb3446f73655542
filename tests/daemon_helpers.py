"""Shared helpers for the daemon tests: the real session log + pipeline, a spec-written parser."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path

from sensord.blelog import BlelogWriter, iter_events
from sensord.daemon import Daemon, DeviceStatus
from sensord.model import DeviceEvent, RawNotification, SessionEvent, sig_uuid
from sensord.pipeline import Pipeline
from sensord.timesource import Clock

HR_MEASUREMENT = sig_uuid(0x2A37)


def midnight_tz() -> str:
    """A fixed-offset zone in which it is now between 01:00 and 02:00 local time.

    Tests that run the real ``sensord run`` process on the wall clock (sped up) use it so
    their few simulated hours never cross the 12:00 night boundary, where the daemon rotates
    to the next night's log: the result must not depend on the time of day CI runs at.
    """
    hour_utc = time.gmtime().tm_hour
    offset_h = (1 - hour_utc) % 24
    if offset_h > 14:
        offset_h -= 24
    return f"Etc/GMT{-offset_h:+d}"  # POSIX sign: Etc/GMT-2 is UTC+2


def make_pipeline(path: Path, clock: Clock, *, batch_size: int = 16) -> Pipeline:
    """The daemon's real path: a .blelog writer (no fsync in tests) under the pipeline."""
    wall0, mono0 = clock.read()
    writer = BlelogWriter(path, participant="p01", tz="Europe/Berlin", host="testhost",
                          wall_ns=wall0, mono_ns=mono0, fsync=False)
    return Pipeline(writer=writer, batch_size=batch_size)


def live_count(daemon: Daemon, device: str, char: str = HR_MEASUREMENT) -> int:
    """Notifications of ``device`` on ``char`` the daemon has recorded so far."""
    sup = next(s for s in daemon.supervisors if s.spec.name == device)
    return sup.status.by_char.get(char, 0)


def status_of(daemon: Daemon, device: str) -> DeviceStatus:
    return next(s for s in daemon.supervisors if s.spec.name == device).status


class LogView:
    """Everything in a session log, read back with the log reader."""

    def __init__(self, path: Path) -> None:
        self.events: list[SessionEvent] = list(iter_events(path))

    def notes(self, device: str, char: str | None = HR_MEASUREMENT) -> list[RawNotification]:
        """Notifications of ``device`` (of characteristic ``char``; ``None`` = all)."""
        return [e for e in self.events if isinstance(e, RawNotification) and e.device == device
                and (char is None or e.char_uuid == char)]

    def kinds(self, device: str) -> list[DeviceEvent]:
        return [e for e in self.events if isinstance(e, DeviceEvent) and e.device == device]


def hr_seq(payload: bytes) -> int:
    """Sequence number the virtual strap puts in the Energy Expended field.

    Written from the Heart Rate Service spec (flags byte; uint8 HR when bit 0 is clear;
    uint16 Energy Expended when bit 3 is set), independently of sensord's decoders.
    """
    flags = payload[0]
    assert flags & 0x08, f"no energy field in {payload.hex()}"
    offset = 3 if flags & 0x01 else 2
    return int(struct.unpack_from("<H", payload, offset)[0])


async def wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``pred`` until true; return the real seconds it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0
