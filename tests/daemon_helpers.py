"""Shared helpers for the daemon tests: a frame parser written from the spec, run loops."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

from sensord.model import DeviceEvent, RawNotification, SessionEvent, sig_uuid

HR_MEASUREMENT = sig_uuid(0x2A37)


class MemoryRecorder:
    """Keeps events in memory (used where a test inspects what the daemon recorded)."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.flushes = 0
        self.closed = False

    def write(self, event: SessionEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

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
