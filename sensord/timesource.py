"""Clocks the daemon, the transports and the tests share (I/O: this module reads the clock).

Every component that needs time takes a :class:`Clock`, so a whole night can run in seconds
in tests (:class:`ScaledClock`) while production uses :class:`SystemClock`. The pure
clock-step repair lives in :mod:`sensord.clock`; this module only *reads* clocks.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time and sleeping, all in one place."""

    def wall_ns(self) -> int:
        """Host wall clock, UTC ns since the Unix epoch (may step)."""

    def mono_ns(self) -> int:
        """Host monotonic clock, ns (never steps; arbitrary origin)."""

    def read(self) -> tuple[int, int]:
        """``(wall_ns, mono_ns)`` read together (what every record is stamped with)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""

    def synced(self) -> bool:
        """Whether the wall clock is synchronised (NTP); ``True`` when unknown."""


class SystemClock:
    """The real clocks of the host."""

    def wall_ns(self) -> int:
        return time.time_ns()

    def mono_ns(self) -> int:
        return time.monotonic_ns()

    def read(self) -> tuple[int, int]:
        return time.time_ns(), time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def synced(self) -> bool:
        return system_clock_synced()


def system_clock_synced() -> bool:
    """Whether the kernel reports the system clock as NTP-synchronised.

    Reads the kernel's ``adjtimex`` status through ``timedatectl``'s source of truth: the
    ``STA_UNSYNC`` bit (0x0040) of ``adjtimex``. Falls back to the presence of
    systemd-timesyncd's ``/run/systemd/timesync/synchronized`` flag file.
    """
    try:
        import ctypes
        import ctypes.util

        class _Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_long * 64)]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
        # TIME_ERROR (5) means the clock is not synchronised.
        if state >= 0:
            return bool(state != 5)
    except OSError:
        pass
    return os.path.exists("/run/systemd/timesync/synchronized")


class ScaledClock:
    """A clock that runs ``speed`` times faster than real time, for tests and benches.

    ``mono_ns`` starts at ``mono0_ns`` and ``wall_ns`` at ``wall0_ns``; both advance
    ``speed`` ns per real ns. :meth:`step_wall` makes the wall clock jump like an NTP
    step; :meth:`set_synced` flips the reported synchronisation state.
    """

    def __init__(self, *, speed: float, wall0_ns: int, mono0_ns: int = 10**12) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._real0_ns = time.monotonic_ns()
        self._wall0_ns = wall0_ns
        self._mono0_ns = mono0_ns
        self._wall_offset_ns = 0
        self._synced = True

    def _elapsed_ns(self) -> int:
        return int((time.monotonic_ns() - self._real0_ns) * self.speed)

    def wall_ns(self) -> int:
        return self._wall0_ns + self._elapsed_ns() + self._wall_offset_ns

    def mono_ns(self) -> int:
        return self._mono0_ns + self._elapsed_ns()

    def read(self) -> tuple[int, int]:
        # One reading for both: a thread switch between two reads would be amplified by
        # ``speed`` and look like a clock step.
        elapsed = self._elapsed_ns()
        return self._wall0_ns + elapsed + self._wall_offset_ns, self._mono0_ns + elapsed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def synced(self) -> bool:
        return self._synced

    def step_wall(self, step_ns: int) -> None:
        """Make the wall clock jump by ``step_ns`` (an NTP step)."""
        self._wall_offset_ns += step_ns

    def set_synced(self, synced: bool) -> None:
        self._synced = synced


class RecordClock:
    """A clock that reads the time of the record being replayed, for replays and benches.

    The replaying code sets :attr:`wall` and :attr:`mono` (ns) from each record before it
    hands the record on, so the daemon's per-event path sees the night's own time. It never
    sleeps: the replay drives time itself.
    """

    def __init__(self, wall_ns: int = 0, mono_ns: int = 0) -> None:
        self.wall = wall_ns
        self.mono = mono_ns

    def wall_ns(self) -> int:
        return self.wall

    def mono_ns(self) -> int:
        return self.mono

    def read(self) -> tuple[int, int]:
        return self.wall, self.mono

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("RecordClock cannot sleep: the replay drives time itself")

    def synced(self) -> bool:
        return True
