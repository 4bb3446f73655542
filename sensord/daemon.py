"""The live daemon: one supervisor per configured wearable, all night, whatever happens.

Per device: connect -> set up (e.g. start the Polar PMD accelerometer at 50 Hz) ->
subscribe -> stream. On a disconnect, or when the no-data watchdog fires (a silent device
sends no disconnect), tear the link down and reconnect after a capped, jittered backoff
(:class:`sensord.backoff.BackoffPolicy`), for as long as the daemon runs. Several devices
run side by side; one device's failures never stop another's.

Every event goes to the session log *first* (the source of truth), then to the optional
downstream consumer (decode -> rolling buffers -> epochs -> outbox). Every component takes
an injectable :class:`sensord.timesource.Clock`, so a whole night runs in seconds in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sensord.backoff import BackoffPolicy
from sensord.ble.transport import Connection, Transport
from sensord.errors import ControlPointError, SensordError, TransportError
from sensord.model import ClockEvent, DeviceEvent, RawNotification, SessionEvent, sig_uuid
from sensord.timesource import Clock, SystemClock

log = logging.getLogger("sensord.daemon")

PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
HR_MEASUREMENT = sig_uuid(0x2A37)
BATTERY_LEVEL = sig_uuid(0x2A19)


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True, slots=True)
class SetupSequence:
    """What the supervisor does after connecting, in order.

    ``notify``: characteristics to subscribe to; ``writes``: control-point requests
    ``(char_uuid, payload)`` sent after subscribing, each answered by an indication on the
    same characteristic (checked when ``control_reply`` is true).
    """

    notify: tuple[str, ...]
    writes: tuple[tuple[str, bytes], ...] = ()
    control_reply: bool = True


def _pmd_start_acc(rate_hz: int = 50) -> bytes:
    # Polar PMD "start measurement" (0x02) for ACC (0x02): sample rate, 16-bit, 8 g range.
    # Setting triplets (type, count=1, uint16 LE value); Polar BLE SDK documentation.
    out = bytearray([0x02, 0x02])
    for setting, value in ((0x00, rate_hz), (0x01, 16), (0x02, 8)):
        out += bytes([setting, 1]) + value.to_bytes(2, "little")
    return bytes(out)


SETUP_SEQUENCES: dict[str, SetupSequence] = {
    "heart_rate": SetupSequence(notify=(HR_MEASUREMENT,)),
    "polar_pmd_acc": SetupSequence(
        notify=(PMD_CONTROL, PMD_DATA), writes=((PMD_CONTROL, _pmd_start_acc(50)),)
    ),
    "polar_h10": SetupSequence(
        notify=(HR_MEASUREMENT, PMD_CONTROL, PMD_DATA),
        writes=((PMD_CONTROL, _pmd_start_acc(50)),),
    ),
}
"""Setup per profile name. Unknown profiles fall back to ``heart_rate``."""


def setup_for(profile: str) -> SetupSequence:
    return SETUP_SEQUENCES.get(profile, SETUP_SEQUENCES["heart_rate"])


def check_pmd_reply(payload: bytes, request: bytes, *, device: str) -> None:
    """Raise :class:`ControlPointError` unless ``payload`` acknowledges ``request``.

    PMD control-point response: 0xF0, op code, measurement type, status (0 = success), ...
    """
    if len(payload) < 4 or payload[0] != 0xF0:
        raise ControlPointError(
            "not a control-point response", status=-1, profile="polar_pmd",
            characteristic=PMD_CONTROL, payload=payload,
        )
    if payload[1:3] != request[:2] or payload[3] != 0:
        raise ControlPointError(
            f"{device}: request {request.hex()} refused (status {payload[3]})",
            status=payload[3], profile="polar_pmd", characteristic=PMD_CONTROL, payload=payload,
        )


# --------------------------------------------------------------------------- recording


class EventRecorder(Protocol):
    """The session log writer (``sensord.blelog.BlelogWriter`` satisfies this)."""

    def write(self, event: SessionEvent) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


EventConsumer = Callable[[SessionEvent], None]
"""Downstream of the log (decode -> buffers -> epochs). Called after the log write."""


class OncePerKind:
    """Counts problems per (device, kind) and logs each kind once per device."""

    def __init__(self, logger: logging.Logger) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._log = logger

    def add(self, device: str, kind: str, detail: str) -> bool:
        key = (device, kind)
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        if n == 0:
            self._log.warning("%s: %s (%s); further ones are only counted", device, kind, detail)
        return n == 0

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (device, kind), n in sorted(self.counts.items()):
            out.setdefault(device, {})[kind] = n
        return out


@dataclass
class DeviceStatus:
    """What ``sensord status`` shows per device (also written to ``status.json``)."""

    name: str
    address: str
    profile: str
    state: str = "starting"
    connected: bool = False
    last_notification_wall_ns: int | None = None
    last_notification_mono_ns: int | None = None
    notifications: int = 0
    connects: int = 0
    disconnects: int = 0
    watchdogs: int = 0
    battery_pct: int | None = None
    epochs_with_data: set[int] = field(default_factory=set, repr=False)


class DeviceSpec(Protocol):
    name: str
    address: str
    profile: str


# --------------------------------------------------------------------------- supervisor


@dataclass(frozen=True, slots=True)
class SupervisorOptions:
    watchdog_s: float = 30.0
    """No notification for this long (clock time) while connected -> tear down, reconnect."""
    connect_timeout_s: float = 20.0
    """Real seconds per connect attempt (radio time does not accelerate)."""
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    max_notifications_per_s: float = 400.0
    """Flood limit per device (clock time); beyond it notifications are counted, not kept."""
    stable_after_s: float = 60.0
    """A link that streamed this long resets the backoff to its first step."""


class DeviceSupervisor:
    """Keeps one wearable connected and streaming, all night."""

    def __init__(
        self,
        spec: DeviceSpec,
        transport: Transport,
        emit: Callable[[SessionEvent], None],
        *,
        clock: Clock,
        options: SupervisorOptions,
        problems: OncePerKind,
        rng: random.Random,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.emit = emit
        self.clock = clock
        self.options = options
        self.problems = problems
        self.rng = rng
        self.setup = setup_for(spec.profile)
        self.status = DeviceStatus(spec.name, spec.address, spec.profile)
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._conn: Connection | None = None
        self._cp_waiter: asyncio.Future[bytes] | None = None
        self._bucket = options.max_notifications_per_s
        self._bucket_mono_ns = 0
        self._known = set(self.setup.notify)

    # -- events from the transport (called on the loop, must not block) --

    def on_event(self, event: SessionEvent) -> None:
        if isinstance(event, RawNotification):
            if not self._admit(event):
                return
            self.emit(event)
            st = self.status
            st.notifications += 1
            st.last_notification_wall_ns = event.wall_ns
            st.last_notification_mono_ns = event.mono_ns
            if event.char_uuid not in self._known:
                self.problems.add(self.spec.name, "unknown characteristic", event.char_uuid)
            if event.char_uuid == PMD_CONTROL and self._cp_waiter and not self._cp_waiter.done():
                self._cp_waiter.set_result(event.payload)
            return
        self.emit(event)
        if isinstance(event, DeviceEvent) and event.kind == "disconnected":
            self._lost.set()

    def _admit(self, event: RawNotification) -> bool:
        """Token bucket on clock time: a flooding device cannot starve the others."""
        rate = self.options.max_notifications_per_s
        if self._bucket_mono_ns:
            self._bucket = min(
                rate, self._bucket + (event.mono_ns - self._bucket_mono_ns) * 1e-9 * rate
            )
        self._bucket_mono_ns = event.mono_ns
        if self._bucket < 1.0:
            self.problems.add(self.spec.name, "flooding", f"> {rate:.0f} notifications/s")
            return False
        self._bucket -= 1.0
        return True

    def _device_event(self, kind: str, detail: str = "") -> None:
        self.emit(
            DeviceEvent(self.spec.name, kind, self.clock.wall_ns(), self.clock.mono_ns(), detail)
        )

    # -- lifecycle --

    def stop(self) -> None:
        self._stop.set()
        self._lost.set()

    async def run(self) -> None:
        attempt = 0
        opts = self.options
        while not self._stop.is_set():
            self.status.state = "connecting"
            started_mono = self.clock.mono_ns()
            streamed_s = 0.0
            try:
                self._lost.clear()
                conn = await self.transport.connect(
                    self.spec.name,
                    self.spec.address,
                    self.on_event,
                    timeout_s=opts.connect_timeout_s,
                    on_disconnect=lambda _d: self._lost.set(),
                )
                self._conn = conn
                self.status.connected = True
                self.status.connects += 1
                await self._set_up(conn)
                self.status.state = "streaming"
                started_mono = self.clock.mono_ns()
                await self._stream()
                streamed_s = (self.clock.mono_ns() - started_mono) / 1e9
            except TransportError as exc:
                self.status.state = "retrying"
                self._device_event("error", str(exc))
                if attempt == 0:
                    log.warning("%s: %s", self.spec.name, exc)
                else:
                    log.debug("%s: %s", self.spec.name, exc)
            except SensordError as exc:  # a refused control point, a bad reply
                self._device_event("error", str(exc))
                log.warning("%s: setup failed: %s", self.spec.name, exc)
            finally:
                await self._tear_down()
            if self._stop.is_set():
                break
            if streamed_s >= opts.stable_after_s:
                attempt = 0
            delay = opts.backoff.delay_s(attempt, self.rng.random())
            attempt += 1
            self.status.state = f"backoff {delay:.1f}s"
            await self._sleep_unless_stopped(delay)
        self.status.state = "stopped"

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    async def _set_up(self, conn: Connection) -> None:
        with contextlib.suppress(TransportError):
            level = await conn.read(BATTERY_LEVEL)
            if level:
                self.status.battery_pct = level[0]
                self._device_event("battery", f"{level[0]}%")
        for uuid in self.setup.notify:
            await conn.start_notify(uuid)
        self._device_event("subscribed", ",".join(self.setup.notify))
        for uuid, request in self.setup.writes:
            loop = asyncio.get_running_loop()
            self._cp_waiter = loop.create_future()
            await conn.write(uuid, request, response=True)
            if self.setup.control_reply:
                try:
                    reply = await asyncio.wait_for(self._cp_waiter, self.options.connect_timeout_s)
                except TimeoutError:
                    raise TransportError(
                        f"{self.spec.name}: no control-point reply to {request.hex()}"
                    ) from None
                check_pmd_reply(reply, request, device=self.spec.name)
                self._device_event("setup", f"{request.hex()} -> {reply.hex()}")
            self._cp_waiter = None
        self.status.last_notification_mono_ns = self.clock.mono_ns()

    async def _stream(self) -> None:
        """Return when the link is lost, the watchdog fires, or the daemon stops."""
        watchdog_ns = int(self.options.watchdog_s * 1e9)
        tick_s = max(0.05, self.options.watchdog_s / 4)
        while not self._lost.is_set():
            await self._wait_lost(tick_s)
            if self._lost.is_set():
                break
            last = self.status.last_notification_mono_ns or 0
            silent_ns = self.clock.mono_ns() - last
            if silent_ns > watchdog_ns:
                self.status.watchdogs += 1
                self._device_event("watchdog", f"no data for {silent_ns / 1e9:.0f} s")
                log.warning("%s: no data for %.0f s, reconnecting", self.spec.name,
                            silent_ns / 1e9)
                return

    async def _wait_lost(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waiter = asyncio.ensure_future(self._lost.wait())
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, waiter):
            task.cancel()

    async def _tear_down(self) -> None:
        conn, self._conn = self._conn, None
        if self.status.connected:
            self.status.disconnects += 1
        self.status.connected = False
        if conn is not None and conn.is_connected:
            try:
                await asyncio.wait_for(conn.disconnect(), timeout=5.0)
            except (TransportError, TimeoutError) as exc:
                log.warning("%s: teardown: %s", self.spec.name, exc)


# --------------------------------------------------------------------------- clock watch


class ClockWatch:
    """Detects wall-clock steps and synchronisation changes; emits :class:`ClockEvent`."""

    def __init__(self, clock: Clock, emit: Callable[[SessionEvent], None],
                 *, threshold_ns: int = 1_000_000_000) -> None:
        self.clock = clock
        self.emit = emit
        self.threshold_ns = threshold_ns
        self.offset_ns = clock.wall_ns() - clock.mono_ns()
        self.synced = clock.synced()
        self.last_step_ns = 0
        self.steps = 0
        if not self.synced:
            log.warning("system clock is not synchronised (NTP); timestamps will be repaired "
                        "from the monotonic clock once it is")

    def check(self) -> None:
        wall, mono = self.clock.wall_ns(), self.clock.mono_ns()
        offset = wall - mono
        synced = self.clock.synced()
        step = offset - self.offset_ns
        if abs(step) > self.threshold_ns or synced != self.synced:
            self.emit(ClockEvent(wall, mono, step if abs(step) > self.threshold_ns else 0, synced))
            if abs(step) > self.threshold_ns:
                self.steps += 1
                self.last_step_ns = step
                log.warning("wall clock stepped by %+.3f s", step / 1e9)
            if synced != self.synced:
                log.log(logging.INFO if synced else logging.WARNING,
                        "system clock %s", "synchronised" if synced else "NOT synchronised")
        self.offset_ns = offset
        self.synced = synced


# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send one sd_notify(3) datagram (``READY=1``, ``WATCHDOG=1``, ...) if systemd asked.

    The protocol: a datagram of ``KEY=VALUE`` lines to the unix socket named in
    ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
    """
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", path, exc)
            return False
    return True


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` (how often to send ``WATCHDOG=1``), or ``None``."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC")
    pid = e.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


# --------------------------------------------------------------------------- the daemon


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    supervisor: SupervisorOptions = field(default_factory=SupervisorOptions)
    status_path: Path | None = None
    status_every_s: float = 10.0
    clock_check_s: float = 5.0
    epoch_s: float = 30.0
    """How often (clock time) the downstream ``on_epoch`` hook runs."""


class Daemon:
    """All supervisors, the session log, the clock watch, status and systemd integration."""

    def __init__(
        self,
        devices: list[DeviceSpec],
        transport: Transport | Callable[[DeviceSpec], Transport],
        recorder: EventRecorder,
        *,
        clock: Clock | None = None,
        options: DaemonOptions | None = None,
        consumer: EventConsumer | None = None,
        on_epoch: Callable[[int], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.options = options or DaemonOptions()
        self.recorder = recorder
        self.consumer = consumer
        self.on_epoch = on_epoch
        self.problems = OncePerKind(log)
        self.events_recorded = 0
        self._stop = asyncio.Event()
        rng = random.Random(seed)
        self.supervisors = [
            DeviceSupervisor(
                spec,
                transport(spec) if callable(transport) and not hasattr(transport, "connect")
                else transport,  # type: ignore[arg-type]
                self.record,
                clock=self.clock,
                options=self.options.supervisor,
                problems=self.problems,
                rng=random.Random(rng.random()),
            )
            for spec in devices
        ]
        self.clock_watch = ClockWatch(self.clock, self.record)

    def record(self, event: SessionEvent) -> None:
        """Log first; then hand to the downstream consumer, which may fail without loss."""
        self.recorder.write(event)
        self.events_recorded += 1
        if self.consumer is not None:
            try:
                self.consumer(event)
            except SensordError as exc:
                device = getattr(event, "device", "host")
                self.problems.add(device, type(exc).__name__, str(exc))

    def stop(self) -> None:
        self._stop.set()
        for sup in self.supervisors:
            sup.stop()

    async def run(self) -> None:
        """Run until :meth:`stop`; flush and close the log on the way out."""
        tasks = [asyncio.ensure_future(s.run()) for s in self.supervisors]
        tasks.append(asyncio.ensure_future(self._housekeeping()))
        sd_notify("READY=1\nSTATUS=recording")
        try:
            await self._stop.wait()
        finally:
            sd_notify("STOPPING=1")
            for sup in self.supervisors:
                sup.stop()
            _done, pending = await asyncio.wait(tasks[:-1], timeout=10)
            for task in [*pending, tasks[-1]]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.write_status()
            self.recorder.flush()
            self.recorder.close()

    async def _housekeeping(self) -> None:
        opts = self.options
        wd = watchdog_interval_s()
        next_wd = time.monotonic()
        last_status = last_clock = last_epoch = self.clock.mono_ns()
        tick_s = min(opts.clock_check_s, opts.status_every_s, opts.epoch_s) / 2
        while not self._stop.is_set():
            await self.clock.sleep(tick_s)
            now = self.clock.mono_ns()
            if now - last_clock >= opts.clock_check_s * 1e9:
                self.clock_watch.check()
                last_clock = now
            if now - last_epoch >= opts.epoch_s * 1e9:
                last_epoch = now
                self.recorder.flush()
                if self.on_epoch is not None:
                    try:
                        self.on_epoch(self.clock.wall_ns())
                    except SensordError as exc:
                        self.problems.add("host", type(exc).__name__, str(exc))
            if now - last_status >= opts.status_every_s * 1e9:
                self.write_status()
                last_status = now
            if wd is not None and time.monotonic() >= next_wd:
                sd_notify("WATCHDOG=1")
                next_wd = time.monotonic() + wd

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot for ``sensord status``."""
        devices = {}
        for sup in self.supervisors:
            st = sup.status
            devices[st.name] = {
                "address": st.address,
                "profile": st.profile,
                "state": st.state,
                "connected": st.connected,
                "last_notification_wall_ns": st.last_notification_wall_ns,
                "notifications": st.notifications,
                "connects": st.connects,
                "disconnects": st.disconnects,
                "watchdogs": st.watchdogs,
                "battery_pct": st.battery_pct,
            }
        return {
            "written_wall_ns": self.clock.wall_ns(),
            "pid": os.getpid(),
            "devices": devices,
            "clock": {
                "synced": self.clock_watch.synced,
                "steps": self.clock_watch.steps,
                "last_step_ns": self.clock_watch.last_step_ns,
            },
            "problems": self.problems.as_dict(),
            "events_recorded": self.events_recorded,
        }

    def write_status(self) -> None:
        path = self.options.status_path
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1))
        os.replace(tmp, path)
