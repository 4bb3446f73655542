"""Replay transport: plays session logs as if their devices were live.

The events of a log reach the sink exactly as the live transport delivered them to
the daemon (same order, same payloads, same clocks), so the daemon's
:class:`~sensord.pipeline.Pipeline` sees the same input and gives the same output.
Playback is as fast as possible (``speed=None``) or paced at ``speed`` times real
time by the recorded monotonic clock; pacing changes only when events are delivered,
never which or in what order, so results are deterministic.

Typical use::

    pipe = Pipeline()
    await replay(["night.blelog"], pipe)        # or speed=60.0 for a 60x real-time playback
    print(pipe.report().format())
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sensord import blelog
from sensord.ble.transport import Advertisement, DisconnectCallback, EventSink
from sensord.errors import TransportError
from sensord.model import ClockEvent, DeviceEvent, RawNotification, SessionEvent

_YIELD_EVERY = 2048  # events between returns to the event loop when unpaced
_MAX_PAUSE_S = 3600.0  # longer recorded pauses (or clock resets) are not waited for


@dataclass(slots=True)
class _Subscriber:
    device: str
    sink: EventSink
    on_disconnect: DisconnectCallback | None


@dataclass(slots=True)
class ReplayConnection:
    """A replayed device. Subscriptions and writes are accepted and ignored (the log
    already holds what followed them); reads return the value last recorded."""

    transport: ReplayTransport
    address: str
    _connected: bool = True
    _subscribed: set[str] = field(default_factory=set)

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def start_notify(self, char_uuid: str) -> None:
        self._subscribed.add(char_uuid)

    async def write(self, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        if not self._connected:
            raise TransportError(f"replay {self.address}: write after disconnect")

    async def read(self, char_uuid: str) -> bytes:
        value = self.transport.last_value(self.address, char_uuid)
        if value is None:
            raise TransportError(f"replay {self.address}: no recorded value of {char_uuid}")
        return value

    async def disconnect(self) -> None:
        self._connected = False
        self.transport._subscribers.pop(self.address, None)


class ReplayTransport:
    """A :class:`~sensord.ble.transport.Transport` that plays recorded session logs.

    Parameters
    ----------
    paths
        Logs to play, one after the other.
    speed
        ``None``: as fast as possible; otherwise this many times real time.
    problems
        Tally for corrupt or skipped records (a new one by default).
    on_log_end
        Called after each log has been played (the pipeline's ``end_session``).
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        speed: float | None = None,
        problems: blelog.Problems | None = None,
        on_log_end: Callable[[str], None] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        if speed is not None and speed <= 0:
            raise TransportError(f"replay speed must be > 0, got {speed}")
        self.speed = speed
        self.problems = problems if problems is not None else blelog.Problems()
        self.on_log_end = on_log_end
        self._subscribers: dict[str, _Subscriber] = {}
        self._values: dict[tuple[str, str], bytes] = {}
        self._position: tuple[str, int | None] = ("<replay>", None)
        self.events_played = 0

    # -- Transport protocol

    async def scan(
        self, *, timeout_s: float, service_uuids: tuple[str, ...] = ()
    ) -> list[Advertisement]:
        """Devices announced in the logs (address = device id in the log)."""
        found: dict[str, tuple[str, ...]] = {}
        for path in self.paths:
            for ev in blelog.iter_events(path, blelog.Problems()):
                if isinstance(ev, DeviceEvent):
                    services = tuple(ev.detail.split()) if ev.kind == "services" else ()
                    found[ev.device] = found.get(ev.device, ()) + services
        wanted = {s.lower() for s in service_uuids}
        return [
            Advertisement(address=d, name=d, rssi_dbm=None, service_uuids=tuple(dict.fromkeys(s)))
            for d, s in found.items()
            if not wanted or wanted & {x.lower() for x in s}
        ]

    async def connect(
        self,
        device: str,
        address: str,
        sink: EventSink,
        *,
        timeout_s: float,
        on_disconnect: DisconnectCallback | None = None,
    ) -> ReplayConnection:
        """Route the events of log device ``address`` to ``sink``, tagged as ``device``."""
        self._subscribers[address] = _Subscriber(device, sink, on_disconnect)
        return ReplayConnection(self, address)

    # -- playback

    def position(self) -> tuple[str, int | None]:
        """(file, line) of the event being delivered: for problem reports."""
        return self._position

    def last_value(self, address: str, char_uuid: str) -> bytes | None:
        return self._values.get((address, char_uuid))

    async def run(self) -> int:
        """Play every log to the connected sinks; returns the number of events delivered.

        Clock events go to every sink; device events and notifications to the sink
        connected for their device (others are dropped, as a radio would never have
        heard them).
        """
        delivered = 0
        loop_t0 = time.monotonic()
        rec_t0: int | None = None
        prev_mono: int | None = None
        for path in self.paths:
            for line, ev in blelog.iter_records(path, self.problems):
                self._position = (path, line)
                if self.speed is not None:
                    mono = ev.mono_ns
                    if rec_t0 is None or prev_mono is None or not (
                        0 <= mono - prev_mono <= _MAX_PAUSE_S * 1e9
                    ):
                        # first event or a clock reset: re-anchor the pacing
                        loop_t0 = time.monotonic()
                        rec_t0 = mono
                    prev_mono = mono
                    due = loop_t0 + (mono - rec_t0) / 1e9 / self.speed
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                elif delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                delivered += await self._deliver(ev)
            if self.on_log_end is not None:
                self.on_log_end(path)
        self.events_played = delivered
        return delivered

    async def _deliver(self, ev: SessionEvent) -> int:
        if isinstance(ev, ClockEvent):
            for each in list(self._subscribers.values()):
                each.sink(ev)
            return 1 if self._subscribers else 0
        sub = self._subscribers.get(ev.device)
        if sub is None:
            return 0
        if isinstance(ev, RawNotification):
            self._values[(ev.device, ev.char_uuid)] = ev.payload
            sub.sink(RawNotification(sub.device, ev.char_uuid, ev.wall_ns, ev.mono_ns,
                                     ev.payload))
        else:
            sub.sink(DeviceEvent(sub.device, ev.kind, ev.wall_ns, ev.mono_ns, ev.detail))
            if ev.kind == "disconnected" and sub.on_disconnect is not None:
                res = sub.on_disconnect(sub.device)
                if res is not None:
                    await res
        return 1


def _all_devices(paths: list[str], problems: blelog.Problems) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        for ev in blelog.iter_events(path, blelog.Problems()):
            if isinstance(ev, RawNotification | DeviceEvent):
                seen.setdefault(ev.device, None)
    return list(seen)


async def replay(
    paths: Iterable[str | os.PathLike[str]],
    pipeline: object,
    *,
    speed: float | None = None,
) -> ReplayTransport:
    """Play logs through ``pipeline`` (a :class:`~sensord.pipeline.Pipeline`): every
    device of the logs is connected to ``pipeline.feed``, problems go to the pipeline's
    tally located by file and line, and each log ends the pipeline's session."""
    from sensord.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise TypeError("replay() needs a sensord.pipeline.Pipeline")
    plist = [str(p) for p in paths]
    transport = ReplayTransport(
        plist, speed=speed, problems=pipeline.problems,
        on_log_end=lambda _path: pipeline.end_session(),
    )
    pipeline.locate = transport.position
    for dev in _all_devices(plist, pipeline.problems):
        await transport.connect(dev, dev, pipeline.feed, timeout_s=0)
    await transport.run()
    return transport
