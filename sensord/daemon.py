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

import numpy as np

from sensord.backoff import BackoffPolicy
from sensord.ble.transport import Connection, Transport
from sensord.devices import (
    PROFILES,
    DecodeContext,
    Profile,
    SetupStep,
    decode_batch,
    decode_one,
    is_known,
)
from sensord.devices.polar_pmd import PMD_CONTROL_POINT
from sensord.errors import ConfigError, SensordError, TransportError
from sensord.model import (
    EPOCH_NS,
    ClockEvent,
    DeviceEvent,
    RawNotification,
    SessionEvent,
    sig_uuid,
)
from sensord.timesource import Clock, SystemClock

log = logging.getLogger("sensord.daemon")

BATTERY_LEVEL = sig_uuid(0x2A19)


# --------------------------------------------------------------------------- profiles


def profile_named(name: str) -> Profile:
    """The device profile (setup sequence) for a configured profile name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown device profile {name!r}; known: {', '.join(PROFILES)}", key="profile"
        ) from None


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
    """A configured device (``sensord.config.DeviceConfig`` satisfies this).

    An optional ``extra_notify`` attribute lists further characteristics to subscribe to
    and record raw (e.g. a vendor characteristic being explored); they are logged, and
    counted as "unknown characteristic" when nothing can decode them.
    """

    name: str
    address: str
    profile: str


class LiveDecoder:
    """Downstream of the log: batches notifications, decodes them once per epoch tick.

    Keeps the last ``keep_s`` seconds of each decoded stream per device (rolling buffers
    bounded in memory). Malformed payloads and characteristics without a decoder are
    counted in ``problems`` (each kind logged once per device); nothing here can stop a
    device or lose a logged record.
    """

    def __init__(self, problems: OncePerKind, *, keep_s: float = 900.0) -> None:
        self.problems = problems
        self.keep_ns = int(keep_s * 1e9)
        self._pending: dict[tuple[str, str], tuple[list[bytes], list[int]]] = {}
        self._context: dict[str, DecodeContext] = {}
        self.buffers: dict[tuple[str, str], list[Any]] = {}
        self.decoded: dict[str, int] = {}
        self.epochs_with_data: dict[str, set[int]] = {}

    def __call__(self, event: SessionEvent) -> None:
        if isinstance(event, RawNotification):
            payloads, walls = self._pending.setdefault((event.device, event.char_uuid), ([], []))
            payloads.append(event.payload)
            walls.append(event.wall_ns)
            self.epochs_with_data.setdefault(event.device, set()).add(event.wall_ns // EPOCH_NS)

    def flush(self, now_wall_ns: int) -> None:
        """Decode everything pending (control points before data, for PMD scale factors)."""
        pending, self._pending = self._pending, {}
        order = sorted(pending, key=lambda k: (k[0], k[1] != PMD_CONTROL_POINT))
        for device, char in order:
            payloads, walls = pending[(device, char)]
            if not is_known(char):
                for _ in payloads:
                    self.problems.add(device, "unknown characteristic", char)
                continue
            ctx = self._context.setdefault(device, DecodeContext())
            result = decode_batch(char, payloads, np.asarray(walls, dtype=np.int64), context=ctx)
            ctx.update(result.context)
            for err in result.errors:
                self.problems.add(device, f"malformed {err.characteristic}", str(err))
            self.decoded[device] = self.decoded.get(device, 0) + result.n_decoded
            for kind, stream in result.streams.items():
                self.buffers.setdefault((device, kind), []).append(stream)
        cutoff = now_wall_ns - self.keep_ns
        for chunks in self.buffers.values():
            while chunks and (len(chunks[0].t_ns) == 0 or int(chunks[0].t_ns[-1]) < cutoff):
                chunks.pop(0)
        for epochs in self.epochs_with_data.values():
            for e in [e for e in epochs if e * EPOCH_NS < cutoff]:
                epochs.discard(e)

    def stream(self, device: str, kind: str) -> list[Any]:
        """Decoded chunks of ``kind`` for ``device`` still in the rolling buffer."""
        return list(self.buffers.get((device, kind), []))


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
        self.profile = profile_named(spec.profile)
        self.status = DeviceStatus(spec.name, spec.address, spec.profile)
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._conn: Connection | None = None
        self._reply_char: str | None = None
        self._reply: asyncio.Future[bytes] | None = None
        self._bucket = options.max_notifications_per_s
        self._bucket_mono_ns = 0

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
            if event.char_uuid == BATTERY_LEVEL and event.payload:
                st.battery_pct = event.payload[0]
            if (event.char_uuid == self._reply_char and self._reply is not None
                    and not self._reply.done()):
                self._reply.set_result(event.payload)
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
        """Run the profile's setup sequence; optional steps may fail, others abort."""
        for step in self.profile.setup:
            try:
                await self._run_step(conn, step)
            except (TransportError, SensordError) as exc:
                if not step.optional:
                    raise
                log.debug("%s: optional setup step %s %s skipped: %s", self.spec.name,
                          step.action, step.char_uuid, exc)
        # Extra characteristics to record raw (vendor ones, exploration); may be absent.
        for uuid in getattr(self.spec, "extra_notify", ()):
            try:
                await conn.start_notify(uuid)
            except TransportError as exc:
                self.problems.add(self.spec.name, "extra characteristic unavailable", str(exc))
        self._device_event("subscribed", self.profile.name)
        self.status.last_notification_mono_ns = self.clock.mono_ns()

    async def _run_step(self, conn: Connection, step: SetupStep) -> None:
        if step.action == "read":
            value = await conn.read(step.char_uuid)
            # A read value is recorded like a notification: the log keeps everything.
            self.on_event(RawNotification(self.spec.name, step.char_uuid, self.clock.wall_ns(),
                                          self.clock.mono_ns(), value))
        elif step.action == "subscribe":
            await conn.start_notify(step.char_uuid)
        elif step.action == "write":
            self._reply_char = step.response_char
            self._reply = asyncio.get_running_loop().create_future()
            try:
                await conn.write(step.char_uuid, step.value, response=True)
                if step.response_char is not None:
                    try:
                        reply = await asyncio.wait_for(self._reply,
                                                       self.options.connect_timeout_s)
                    except TimeoutError:
                        raise TransportError(
                            f"{self.spec.name}: no reply on {step.response_char} to "
                            f"{step.value.hex()} ({step.note})"
                        ) from None
                    decode_one(step.response_char, reply)  # raises ControlPointError
                    self._device_event("setup", f"{step.note}: {step.value.hex()} -> "
                                                f"{reply.hex()}")
            finally:
                self._reply_char, self._reply = None, None
        else:
            raise ConfigError(f"unknown setup action {step.action!r}", key="profile")

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
        self.on_epoch = on_epoch
        self.problems = OncePerKind(log)
        self.decoder = LiveDecoder(self.problems)
        self.consumer: EventConsumer = consumer or self.decoder
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
        try:
            self.consumer(event)
        except SensordError as exc:
            device = getattr(event, "device", "host")
            self.problems.add(device, type(exc).__name__, str(exc))

    def epoch_tick(self) -> None:
        """Every epoch: flush the log, decode what arrived, run the downstream hook."""
        self.recorder.flush()
        now = self.clock.wall_ns()
        try:
            self.decoder.flush(now)
            if self.on_epoch is not None:
                self.on_epoch(now)
        except SensordError as exc:
            self.problems.add("host", type(exc).__name__, str(exc))

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
            self.epoch_tick()
            self.write_status()
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
                self.epoch_tick()
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
                "decoded": self.decoder.decoded.get(st.name, 0),
                "epochs_with_data": len(self.decoder.epochs_with_data.get(st.name, ())),
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
