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
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import json
import logging
import multiprocessing
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sensord.backoff import BackoffPolicy
from sensord.ble.transport import Connection, Transport
from sensord.clock import STEP_THRESHOLD_NS
from sensord.daemon_rescore import malloc_trim, rescore_logs
from sensord.devices import PROFILES, Profile, SetupStep, decode_one
from sensord.errors import ConfigError, SensordError, TransportError
from sensord.model import (
    EPOCH_NS,
    AccStream,
    ClockEvent,
    DeviceEvent,
    NightStreams,
    RawNotification,
    SessionEvent,
    sig_uuid,
)
from sensord.pipeline import Pipeline, build_night
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
    by_char: dict[str, int] = field(default_factory=dict)
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

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def profile(self) -> str: ...


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
    flood_burst_s: float = 10.0
    """Bursts up to this many seconds' worth of the limit pass (a radio catching up)."""
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
        self._rate = options.max_notifications_per_s
        self._capacity = options.max_notifications_per_s * options.flood_burst_s
        self._bucket = self._capacity
        self._bucket_mono_ns = 0

    # -- events from the transport (called on the loop, must not block) --

    def on_event(self, event: SessionEvent) -> None:
        if isinstance(event, RawNotification):
            # Token bucket on clock time: a flooding device cannot starve the others.
            mono = event.mono_ns
            if self._bucket_mono_ns:
                bucket = self._bucket + (mono - self._bucket_mono_ns) * 1e-9 * self._rate
                if bucket > self._capacity:
                    bucket = self._capacity
            else:
                bucket = self._bucket
            self._bucket_mono_ns = mono
            if bucket < 1.0:
                self._bucket = bucket
                self._flooding()
                return
            self._bucket = bucket - 1.0
            self.emit(event)
            st = self.status
            st.notifications += 1
            char, wall = event.char_uuid, event.wall_ns
            by_char = st.by_char
            by_char[char] = by_char.get(char, 0) + 1
            st.epochs_with_data.add(wall // EPOCH_NS)
            st.last_notification_wall_ns = wall
            st.last_notification_mono_ns = mono
            if char == BATTERY_LEVEL and event.payload:
                st.battery_pct = event.payload[0]
            if (self._reply is not None and char == self._reply_char
                    and not self._reply.done()):
                self._reply.set_result(event.payload)
            return
        self.emit(event)
        if isinstance(event, DeviceEvent) and event.kind == "disconnected":
            self._lost.set()

    def _flooding(self) -> None:
        self.problems.add(self.spec.name, "flooding",
                          f"> {self._rate:.0f} notifications/s")

    def _device_event(self, kind: str, detail: str = "") -> None:
        self.emit(
            DeviceEvent(self.spec.name, kind, *self.clock.read(), detail)
        )

    # -- lifecycle --

    def stop(self) -> None:
        self._stop.set()
        self._lost.set()

    async def run(self) -> None:
        attempt = 0
        delay = 0.0
        opts = self.options
        while not self._stop.is_set():
            self.status.state = "connecting"
            # Every attempt is in the log with the backoff that preceded it, so a night's
            # retries (and the policy's bounds) can be read back from the log alone.
            self._device_event("connecting", f"backoff_s={delay:.3f}")
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
            self.on_event(RawNotification(self.spec.name, step.char_uuid, *self.clock.read(),
                                          value))
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
    """Detects wall-clock steps and synchronisation changes; repairs exported times.

    :meth:`check` reads the clock periodically and records a :class:`ClockEvent` when the
    offset ``wall - mono`` jumps by more than ``threshold_ns`` or the NTP state changes.
    :meth:`observe` sees every record (in log order) and splits them into constant-offset
    segments with exactly the rule of :func:`sensord.clock.find_segments`, so
    :meth:`correct` gives the same times as :func:`sensord.clock.repair_wall_ns` on the log.
    """

    def __init__(self, clock: Clock, emit: Callable[[SessionEvent], None],
                 *, threshold_ns: int = STEP_THRESHOLD_NS) -> None:
        self.clock = clock
        self.emit = emit
        self.threshold_ns = threshold_ns
        wall, mono = clock.read()
        self.offset_ns = wall - mono
        self.synced = clock.synced()
        self.last_step_ns = 0
        self.steps = 0
        # Record segments: [first raw wall, last raw wall, offset of the first record].
        self.segments: list[list[int]] = []
        # offset and mono of the last record (none yet: the first record starts a segment)
        self._last_offset = 0
        self._last_mono: int | None = None
        if not self.synced:
            log.warning("system clock is not synchronised (NTP); timestamps will be repaired "
                        "from the monotonic clock once it is")

    def check(self) -> None:
        wall, mono = self.clock.read()
        offset = wall - mono
        synced = self.clock.synced()
        step = offset - self.offset_ns
        stepped = abs(step) > self.threshold_ns
        if stepped or synced != self.synced:
            self.emit(ClockEvent(wall, mono, step if stepped else 0, synced))
            if stepped:
                self.steps += 1
                self.last_step_ns = step
                log.warning("wall clock stepped by %+.3f s", step / 1e9)
            if synced != self.synced:
                log.log(logging.INFO if synced else logging.WARNING,
                        "system clock %s", "synchronised" if synced else "NOT synchronised")
        self.offset_ns = offset
        self.synced = synced

    def observe(self, wall_ns: int, mono_ns: int) -> None:
        """Track one record (every record, in log order)."""
        offset = wall_ns - mono_ns
        last_mono = self._last_mono
        if (last_mono is None or mono_ns < last_mono
                or abs(offset - self._last_offset) > self.threshold_ns):
            self.segments.append([wall_ns, wall_ns, offset])
        else:
            seg = self.segments[-1]
            if wall_ns < seg[0]:
                seg[0] = wall_ns
            elif wall_ns > seg[1]:
                seg[1] = wall_ns
        self._last_offset = offset
        self._last_mono = mono_ns

    def correct(self, t_ns: np.ndarray) -> np.ndarray:
        """Raw wall times of samples -> repaired (shifted to the newest segment's offset).

        A sample belongs to the earlier segment whose raw-wall range holds it; anything
        else (the current segment) is left as it is.
        """
        t = np.asarray(t_ns, dtype=np.int64)
        if len(self.segments) < 2 or t.size == 0:
            return t
        out = t.copy()
        current = self.segments[-1][2]
        done = np.zeros(t.size, dtype=bool)
        for first, last, offset in reversed(self.segments[:-1]):
            inside = (t >= first) & (t <= last) & ~done
            out[inside] += current - offset
            done |= inside
        return out


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


_LIVE_STAGERS: dict[str, Any] = {}
"""The :class:`sensord.staging.live.LiveStager` of each daemon (its token) in this process."""


def provisional_job(token: str, night: NightStreams, acc_source: str, acc_new: AccStream | None,
                    tz: str, participant: str, lo_ns: int, end_ns: int,
                    night_key: str = "") -> tuple[bytes, int, int]:
    """Stage the complete epochs in [lo, end) not staged yet; their epoch and
    epoch-feature lines (provisional).

    ``acc_new`` is the acceleration that arrived since the previous call of this daemon
    (``token``), whose counts are kept, as is the night so far, by the daemon's
    :class:`sensord.staging.live.LiveStager`; ``night`` holds the last minutes of the
    other streams; ``night_key`` names the night (its log).
    """
    from sensord.staging.live import LiveStager
    from sensord.store.points import epoch_feature_lines, epoch_lines

    stager = _LIVE_STAGERS.setdefault(token, LiveStager())
    if acc_new is not None and len(acc_new):
        stager.add_acc(acc_source, acc_new)
    staged = stager.stage(night, lo_ns=lo_ns, end_ns=end_ns, night_key=night_key, tz=tz)
    if not staged.t_ns.size:
        return b"", 0, lo_ns
    body = epoch_lines(participant, staged.scorer, staged.t_ns, staged.stages,
                       staged.probabilities, final=False, night=staged.night)
    body += epoch_feature_lines(participant, staged.scorer, staged.t_ns, staged.features)
    return body, int(staged.t_ns.size), int(staged.t_ns[-1]) + EPOCH_NS


def drop_provisional_state(token: str) -> None:
    """Forget a daemon's live counts."""
    _LIVE_STAGERS.pop(token, None)


_OPENBLAS_SET_THREADS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                         "openblas_set_num_threads64_", "openblas_set_num_threads")
_OPENBLAS_GET_THREADS = tuple(name.replace("_set_", "_get_") for name in _OPENBLAS_SET_THREADS)


def _loaded_openblas() -> list[Any]:
    """The OpenBLAS libraries mapped into this process (numpy's wheel bundles its own;
    Debian's numpy uses the system one), as ctypes handles."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps
                     if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:  # not Linux
        return []
    libs = []
    for path in sorted(paths):
        with contextlib.suppress(OSError):
            libs.append(ctypes.CDLL(path))
    return libs


def blas_threads() -> int | None:
    """Threads the loaded OpenBLAS uses (``None`` if none is found)."""
    for lib in _loaded_openblas():
        for name in _OPENBLAS_GET_THREADS:
            get = getattr(lib, name, None)
            if get is not None:
                return int(get())
    return None


def set_blas_threads(n: int) -> bool:
    """Run this process's OpenBLAS on ``n`` threads; whether a library was found.

    numpy is loaded (and its OpenBLAS has started one thread per core) long before the
    daemon knows it will stage windows, so the environment variables come too late here.
    A window's products are small, but the counts of several minutes of acceleration (a
    longer ``provisional_every_s``, or the first job) are not: OpenBLAS then splits them
    over both cores of a Pi, and its second thread spins after each one (on the bench at
    a 300-s cadence 3.7 CPU-s a night in that thread alone, for 0.8 in the jobs).
    """
    found = False
    for lib in _loaded_openblas():
        for name in _OPENBLAS_SET_THREADS:
            set_threads = getattr(lib, name, None)
            if set_threads is not None:
                set_threads(n)
                found = True
                break
    return found


class _InlineExecutor(concurrent.futures.Executor):
    """Runs jobs at once in the calling thread (``score_in_subprocess=False``)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


# --------------------------------------------------------------------------- export


EXPORT_STREAMS = ("hr", "battery")
"""Decoded streams exported live. Beat times are reconstructed over a whole batch of
notifications, so they are exported once, by the end-of-night re-score from the log (which
also re-exports heart rate and battery at identical times: InfluxDB overwrites them).
50 Hz motion stays in the log."""


def samples_after(after_ns: int, t_ns: np.ndarray, *columns: np.ndarray
                  ) -> tuple[np.ndarray, ...] | None:
    """``t_ns`` and each column (same length) at the samples with ``t_ns > after_ns``, in
    order, as new arrays; ``None`` if there are none.

    When they are the last samples (a rolling buffer is in time order unless a clock
    repair moved some) they are copied as slices, without a boolean index's gather.
    """
    newer = t_ns > after_ns
    n_newer = int(np.count_nonzero(newer))
    if n_newer == 0:
        return None
    first = t_ns.size - n_newer
    if newer[first:].all():
        return tuple(v[first:].copy() for v in (t_ns, *columns))
    return tuple(v[newer] for v in (t_ns, *columns))


class Exporter:
    """Turns newly decoded samples into outbox lines, with clock-step repair applied.

    Samples are held back while the system clock is not synchronised (their timestamps
    would need repair that is only known once NTP has stepped the clock); everything is
    exported, repaired, once it is. ``participant`` and the per-device ``role`` are tags.
    """

    def __init__(self, outbox: Any, participant: str, roles: dict[str, str],
                 clock_watch: ClockWatch) -> None:
        self.outbox = outbox
        self.participant = participant
        self.roles = roles
        self.clock_watch = clock_watch
        self.cursor_ns: dict[tuple[str, str], int] = {}
        self.lines_queued = 0

    def export(self, devices: dict[str, Any], *, synced: bool) -> int:
        from sensord.store.lineproto import schema_columns

        if self.outbox is None or not synced:
            return 0
        bodies: list[bytes] = []
        for name, ds in devices.items():
            role = self.roles.get(name, "other")
            tags = {"participant": self.participant, "device_role": role}
            for kind in EXPORT_STREAMS:
                stream = ds.get(kind)
                if stream is None or len(stream) == 0:
                    continue
                after = self.cursor_ns.get((name, kind), -(2**62))
                new = stream.t_ns > after
                if not new.any():
                    continue
                self.cursor_ns[(name, kind)] = int(stream.t_ns[new].max())
                t = self.clock_watch.correct(stream.t_ns[new])
                if kind == "hr":
                    fields: dict[str, Any] = {"hr_bpm": stream.hr_bpm[new]}
                    measurement = "heart_rate"
                else:
                    fields = {"battery_pct": np.asarray(stream.battery_pct)[new].astype(np.int64)}
                    measurement = "device_battery"
                bodies.append(schema_columns(measurement, tags, t, fields))
        if not bodies:
            return 0
        # One transaction, without an fsync: the end-of-night re-score exports these samples
        # again from the session log (the source of truth, fsync'd every LOG_FSYNC_S), so a
        # power cut cannot cost them.
        n = self.outbox.add_body(b"".join(bodies), source="daemon", durable=False)
        self.lines_queued += n
        return n


TRIM_EVERY_TICKS = 10
"""Rolling buffers are trimmed every this many epoch ticks (so they hold between
``keep_s`` and ``keep_s`` + 5 min of data at the default 30-s tick)."""


def trim_streams(devices: dict[str, Any], keep_from_ns: int,
                 acc_keep_from_ns: Mapping[str, int] | None = None) -> None:
    """Drop decoded samples older than ``keep_from_ns`` (rolling buffers, bounded memory);
    a device's acceleration older than ``acc_keep_from_ns[device]`` too, where given.

    The session log keeps everything; the end-of-night score is computed from the log.
    """
    for device, ds in devices.items():
        for name in ds.names():
            keep_from = keep_from_ns
            if name == "acc" and acc_keep_from_ns and device in acc_keep_from_ns:
                keep_from = max(keep_from_ns, acc_keep_from_ns[device])
            stream = ds.get(name)
            if stream is None or len(stream) == 0 or int(stream.t_ns[0]) >= keep_from:
                continue
            keep = stream.t_ns >= keep_from
            values = {}
            for f in dataclasses.fields(stream):
                v = getattr(stream, f.name)
                values[f.name] = (v[keep] if isinstance(v, np.ndarray)
                                  and v.shape[:1] == stream.t_ns.shape else v)
            trimmed = type(stream)(**values)
            ds._parts[name] = [trimmed]
            ds.streams[name] = trimmed


def shift_streams(night: NightStreams, correct: Callable[[np.ndarray], np.ndarray]) -> None:
    """Apply a time correction to every stream of ``night`` in place (repaired times)."""
    for name in ("hr", "beats", "acc", "counts"):
        stream = getattr(night, name)
        if stream is not None and len(stream):
            t_ns = correct(stream.t_ns)
            if t_ns is not stream.t_ns:  # (no repair, the usual case: the stream as it is)
                setattr(night, name, dataclasses.replace(stream, t_ns=t_ns))
    if len(night.off_body_t_ns):
        night.off_body_t_ns = correct(night.off_body_t_ns)


# --------------------------------------------------------------------------- the daemon


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    supervisor: SupervisorOptions = field(default_factory=SupervisorOptions)
    status_path: Path | None = None
    status_every_s: float = 30.0
    clock_check_s: float = 5.0
    epoch_s: float = 30.0
    """How often (clock time) decoded data is exported and the downstream hook runs."""
    keep_s: float = 900.0
    """Decoded samples kept in memory (rolling buffers) for live epochs."""
    keep_acc_s: float = 60.0
    """Decoded acceleration kept once the provisional stager has counted it (it keeps the
    1-s counts itself, so older samples are never read again); what it has not counted
    yet is kept up to ``keep_s``. Each epoch tick copies the acceleration buffer to hand
    the new samples over: 1-6 minutes of it instead of 15-20."""
    push_every_s: float = 60.0
    """How often (clock time) the outbox is pushed to the sink, when there is one."""
    provisional_every_s: float = 30.0
    """How often (clock time) the epochs completed since the last call get provisional
    stages and features (every epoch is staged; this sets the batch and the delay)."""
    provisional_window_s: float = 600.0
    """Data (before the newest epoch) the provisional scorer looks at."""
    rescore_on_stop: bool = True
    """Re-score the night from its log when the daemon stops (e.g. in the morning)."""
    morning_quiet_s: float = 900.0
    """The morning disconnect: when every device has been disconnected and silent this long
    (clock time) while the ``morning`` predicate holds (the night window is ending), the
    night so far is re-scored from its log, as at the night boundary and on stop."""
    score_in_subprocess: bool = True
    """Re-score whole nights in a separate worker process (a night's arrays never enter the
    recording process), and stage provisional windows in a thread of this process; with
    ``False`` both run at once in the calling thread (tests)."""


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that set numpy's BLAS thread count (OpenBLAS, OpenMP, MKL builds)."""
_USER_SET_BLAS_THREADS = any(var in os.environ for var in BLAS_THREAD_VARIABLES)
"""Whether the user chose a BLAS thread count (read before the daemon sets one for its
worker): then the recording process keeps it too."""


class Daemon:
    """All supervisors, the pipeline (log first), the clock watch, export, status, systemd."""

    def __init__(
        self,
        devices: list[DeviceSpec],
        transport: Transport,
        pipeline: Pipeline,
        *,
        clock: Clock | None = None,
        options: DaemonOptions | None = None,
        outbox: Any = None,
        sender: Any = None,
        participant: str = "demo",
        tz: str = "UTC",
        on_epoch: Callable[[Daemon, int], None] | None = None,
        rotate: Callable[[int], Any] | None = None,
        morning: Callable[[int], bool] | None = None,
        seed: int | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.options = options or DaemonOptions()
        self.pipeline = pipeline
        self.on_epoch = on_epoch
        self.problems = OncePerKind(log)
        self.events_recorded = 0
        self.sender = sender
        self.outbox = outbox
        self.last_push: dict[str, Any] = {}
        self._last_push_ok = False  # outcome of the latest push attempt (none yet: False)
        self._last_push_ok_ns = 0  # (repaired) wall time the latest good push finished
        self._stop = asyncio.Event()
        self._pushing: asyncio.Future[Any] | None = None
        self._push_executor: concurrent.futures.ThreadPoolExecutor | None = None
        rng = random.Random(seed)
        self.supervisors = [
            DeviceSupervisor(
                spec, transport, self.record, clock=self.clock,
                options=self.options.supervisor, problems=self.problems,
                rng=random.Random(rng.random()),
            )
            for spec in devices
        ]
        self.clock_watch = ClockWatch(self.clock, self.record)
        self.roles = {spec.name: getattr(spec, "role", "other") for spec in devices}
        self.exporter = Exporter(outbox, participant, self.roles, self.clock_watch)
        self.participant = participant
        self.tz = tz
        self.rotate = rotate
        self.morning = morning
        self._morning_scored_at = 0  # notifications recorded when last scored that way
        self.provisional_cursor_ns = 0
        self.provisional_epochs = 0
        self.provisional_batches = 0  # provisional jobs that queued epochs
        self.final_results: list[dict[str, Any]] = []
        self._last_provisional_mono = 0
        self._ticks = 0
        self._trim = malloc_trim()
        self._scorer: concurrent.futures.Executor | None = None  # final re-scores
        # workers with their night submitted, shut down once it is scored
        self._retired: list[tuple[concurrent.futures.Executor,
                                  concurrent.futures.Future[Any]]] = []
        self._live: concurrent.futures.Executor | None = None  # provisional jobs
        # set once the running provisional job's result is queued (its done callback ran:
        # a future counts as done before its callbacks have run)
        self._provisional_queued: threading.Event | None = None
        self._live_token = f"{os.getpid()}-{id(self)}-{time.monotonic_ns()}"
        self._acc_sent_ns: dict[str, int] = {}  # newest acceleration sent per device
        self._acc_sent_raw_ns: dict[str, int] = {}  # the same sample's unrepaired time

    def record(self, event: SessionEvent) -> None:
        """The pipeline logs first, then decodes; a decode failure never loses the record."""
        self.clock_watch.observe(event.wall_ns, event.mono_ns)
        try:
            self.pipeline.feed(event)
        except SensordError as exc:
            device = getattr(event, "device", "host")
            self.problems.add(device, type(exc).__name__, str(exc))
        self.events_recorded += 1

    def stop(self) -> None:
        self._stop.set()
        for sup in self.supervisors:
            sup.stop()

    def epoch_tick(self) -> None:
        """Every epoch: export new samples (repaired), trim buffers, run the downstream hook."""
        now = self.clock.wall_ns()
        try:
            self.pipeline.decode_pending()
            self.exporter.export(self.pipeline.devices, synced=self.clock_watch.synced)
            mono = self.clock.mono_ns()
            # ticks come every epoch_s, give or take the scheduler: due half a tick early,
            # so that a late previous tick does not skip this one (at the default, every
            # tick stages the epoch that has just ended)
            due_s = self.options.provisional_every_s - self.options.epoch_s / 2
            if mono - self._last_provisional_mono >= due_s * 1e9:
                self._last_provisional_mono = mono
                self.provisional_stage(now)
            if self._ticks % TRIM_EVERY_TICKS == 0:  # copies every buffer: not every epoch
                # counted acceleration: a minute; not yet counted: up to keep_s
                keep_acc = now - int(self.options.keep_acc_s * 1e9)
                trim_streams(self.pipeline.devices, now - int(self.options.keep_s * 1e9),
                             {device: min(keep_acc, sent_raw_ns) for device, sent_raw_ns
                              in self._acc_sent_raw_ns.items()})
            self._ticks += 1
            if self._ticks % 20 == 0:  # every 10 minutes at the default epoch tick
                self._trim()
            if self._retired:
                self._release_workers()
            oldest_epoch = (now - 12 * 3600 * 10**9) // EPOCH_NS
            for sup in self.supervisors:
                epochs = sup.status.epochs_with_data
                if epochs and min(epochs) < oldest_epoch:  # (min: cheaper than a new set)
                    sup.status.epochs_with_data = {e for e in epochs if e >= oldest_epoch}
            if self.on_epoch is not None:
                self.on_epoch(self, now)
        except SensordError as exc:
            self.problems.add("host", type(exc).__name__, str(exc))

    def _scoring(self) -> concurrent.futures.Executor:
        """The worker that re-scores whole nights: a separate process (a night's arrays,
        some 82 MB at its peak, never enter the recording process), one per night (see
        :meth:`_final_score`); or this thread if disabled."""
        if self._scorer is None:
            if self.options.score_in_subprocess:
                # The worker's matrix products are small: a second BLAS thread only spins
                # (on 2 cores it doubled the worker's CPU time). The worker inherits this;
                # numpy here is loaded already, and a value set by the user wins.
                for var in BLAS_THREAD_VARIABLES:
                    os.environ.setdefault(var, "1")
                self._scorer = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            else:
                self._scorer = _InlineExecutor()
        return self._scorer

    def _live_scoring(self) -> concurrent.futures.Executor:
        """Where provisional jobs run: one thread of this process, or the calling thread
        if disabled. A job is a few ms of numpy on ten minutes of data every 30 s; run in
        the worker process as before, it cost the same CPU time (bench/daemon.py) but kept
        a worker alive all day, holding the memory of its last night's re-score."""
        if self._live is None:
            if self.options.score_in_subprocess:
                if not _USER_SET_BLAS_THREADS:
                    set_blas_threads(1)
                self._live = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="sensord-provisional")
            else:
                self._live = _InlineExecutor()
        return self._live

    def _forget_live(self) -> None:
        """A broken provisional executor: the next job starts a new one with no motion
        counts, so all buffered acceleration is sent again."""
        self._live = None
        drop_provisional_state(self._live_token)
        self._acc_sent_ns.clear()
        self._acc_sent_raw_ns.clear()

    def provisional_stage(self, now_wall_ns: int) -> None:
        """Stage the newest complete epochs from the rolling buffers; queue their stages and
        features (final=False).

        The job (in the provisional thread) gets the buffered heart rate and beats and only
        the acceleration that arrived since the previous call (repaired times), whose
        motion counts it keeps (:mod:`sensord.staging.live`); it scores the last
        ``provisional_window_s``. The buffers' arrays are never written in place (new data,
        trims and clock repairs make new arrays), so the thread reads them as they were.
        The final stages come from the whole night's log at the end. Skipped while the
        previous job still runs.
        """
        if self.outbox is None or not self.clock_watch.synced:
            return
        if self._provisional_queued is not None and not self._provisional_queued.is_set():
            return
        end = int(self.clock_watch.correct(np.array([now_wall_ns]))[0]) // EPOCH_NS * EPOCH_NS
        start = end - int(self.options.provisional_window_s * 1e9) // EPOCH_NS * EPOCH_NS
        night = build_night(self.pipeline.devices, start, end)
        acc, night.acc = night.acc, None
        acc_source = next((name for name, ds in self.pipeline.devices.items()
                           if acc is not None and ds.get("acc") is acc), "")
        shift_streams(night, self.clock_watch.correct)
        acc_new = None
        acc_new_raw_ns = 0
        if acc is not None and len(acc):
            t = self.clock_watch.correct(acc.t_ns)
            newer = samples_after(self._acc_sent_ns.get(acc_source, -1), t, acc.acc_g, acc.t_ns)
            if newer is not None:
                acc_new = AccStream(newer[0], newer[1])
                acc_new_raw_ns = int(newer[2][-1])
        present = [st for st in (night.hr, night.beats, acc) if st is not None and len(st)]
        if not present:
            return
        first = min(int(st.t_ns[0]) for st in present)
        # Newest complete epochs not queued yet, none before the first data of the window
        # (the final grid starts at the night's first data too).
        lo = max(self.provisional_cursor_ns, start, first // EPOCH_NS * EPOCH_NS)
        scorer = self._live_scoring()
        try:
            fut = scorer.submit(provisional_job, self._live_token, night, acc_source, acc_new,
                                self.tz, self.participant, lo, end,
                                str(getattr(self.pipeline.writer, "path", "")))
        except concurrent.futures.BrokenExecutor as exc:  # a new executor next time
            self.problems.add("host", "provisional scorer restarted", repr(exc))
            self._forget_live()
            return
        if acc_new is not None:
            self._acc_sent_ns[acc_source] = int(acc_new.t_ns[-1])
            self._acc_sent_raw_ns[acc_source] = acc_new_raw_ns
        queued = self._provisional_queued = threading.Event()
        outbox = self.outbox

        def done(f: concurrent.futures.Future[tuple[bytes, int, int]]) -> None:
            try:
                body, n_new, cursor = f.result()
            except Exception as exc:  # a scoring failure must not touch recording
                self.problems.add("host", "provisional scoring failed", repr(exc))
                if isinstance(exc, concurrent.futures.BrokenExecutor):
                    self._forget_live()
                queued.set()
                return
            try:
                if n_new:
                    # provisional stages are re-derived in the morning: no fsync for them
                    outbox.add_body(body, source="daemon provisional", durable=False)
                    self.provisional_cursor_ns = max(self.provisional_cursor_ns, cursor)
                    self.provisional_epochs += n_new
                    self.provisional_batches += 1
            finally:
                queued.set()

        fut.add_done_callback(done)

    def wait_scoring(self) -> None:
        """Block until the running provisional job (if any) has been queued."""
        if self._provisional_queued is not None:
            self._provisional_queued.wait()

    def _final_score(self, paths: list[Path]) -> concurrent.futures.Future[Any]:
        """Re-score the night in ``paths`` in the worker, whose only night it is: once the
        night is scored the worker is shut down (:meth:`_release_workers`), handing its
        memory back, and the next night starts a new one (none waits idle in between)."""
        pool = self._scoring()
        own_process = not isinstance(pool, _InlineExecutor)
        fut = pool.submit(rescore_logs, paths, participant=self.participant, tz=self.tz,
                          roles=self.roles, own_process=own_process)
        if own_process:
            self._scorer = None
            self._retired.append((pool, fut))
        return fut

    def _release_workers(self, *, all_of_them: bool = False) -> None:
        """Shut down the workers whose night is scored (each exits at once, so this takes
        milliseconds); with ``all_of_them`` also those still scoring, waiting for them."""
        running = []
        for pool, fut in self._retired:
            if all_of_them or fut.done():
                pool.shutdown(wait=True)
            else:
                running.append((pool, fut))
        self._retired = running

    def rescore(self, paths: list[Path]) -> dict[str, Any] | None:
        """Final stages and summary of the night in ``paths`` into the outbox (blocking)."""
        self.wait_scoring()
        body, rows, summary, epochs = self._final_score(paths).result()
        self._release_workers()
        return self._store_final(paths, body, rows, summary, epochs)

    def _store_final(self, paths: list[Path], body: bytes, rows: list[str],
                     summary: dict[str, Any] | None,
                     epochs: dict[str, list[Any]]) -> dict[str, Any] | None:
        if self.outbox is not None:
            source = f"daemon final {paths[-1].name}"
            self.outbox.add_body(body, source=source)
            self.outbox.add_lines(rows, source=source)
            if summary is not None and summary.get("night"):
                self.outbox.put_night(
                    {k: v for k, v in summary.items() if not isinstance(v, dict)},
                    epochs=epochs, queue=False)
        if summary is not None:
            self.final_results.append(summary)
            log.info("night %s scored from %s: %s", summary.get("night"),
                     ", ".join(p.name for p in paths),
                     ", ".join(f"{k}={summary[k]}" for k in ("tst_min", "coverage")
                               if k in summary))
        return summary

    def close_scoring(self) -> None:
        """Stop the provisional thread and the scoring worker (waits for both, so their CPU
        time is accounted) and forget the live counts."""
        self._release_workers(all_of_them=True)
        for executor in (self._live, self._scorer):
            if executor is not None:
                executor.shutdown(wait=True)
        self._live = self._scorer = None
        drop_provisional_state(self._live_token)
        self._acc_sent_ns.clear()
        self._acc_sent_raw_ns.clear()

    def _rotate_if_new_night(self) -> None:
        """At the night boundary: close this night's log, open the next, score the last."""
        if self.rotate is None or self.pipeline.writer is None:
            return
        now = self._now_ns()
        new_writer = self.rotate(now)
        if new_writer is None:
            return
        old = self.pipeline.writer
        self.pipeline.end_session()
        old.close()
        self.pipeline.writer = new_writer
        # Score the finished night in the worker; recording goes on meanwhile.
        paths = [Path(old.path)]
        fut = self._final_score(paths)
        fut.add_done_callback(lambda f: self._queue_final(paths, f))

    def _rescore_if_morning(self) -> None:
        """The morning disconnect: every device gone and quiet for ``morning_quiet_s`` while
        the night window is ending -> score the night so far from its log (in the worker;
        recording goes on, and a later score of the same log overwrites this one)."""
        if self.morning is None or self.pipeline.writer is None or not self.supervisors:
            return
        if any(sup.status.connected for sup in self.supervisors):
            return
        notes = sum(sup.status.notifications for sup in self.supervisors)
        if notes == self._morning_scored_at:
            return
        mono = self.clock.mono_ns()
        last = max(sup.status.last_notification_mono_ns or 0 for sup in self.supervisors)
        if mono - last < self.options.morning_quiet_s * 1e9:
            return
        now = self._now_ns()
        if not self.morning(now):
            return
        self._morning_scored_at = notes
        self.pipeline.writer.flush()  # decodable from disk up to the last record
        paths = [Path(self.pipeline.writer.path)]
        log.info("all devices disconnected in the morning: scoring %s", paths[0].name)
        fut = self._final_score(paths)
        fut.add_done_callback(lambda f: self._queue_final(paths, f))

    def _queue_final(self, paths: list[Path], fut: concurrent.futures.Future[Any]) -> None:
        try:
            self._store_final(paths, *fut.result())
        except Exception as exc:  # a scoring failure must not touch recording
            self.problems.add("host", "final scoring failed", repr(exc))

    async def run(self) -> None:
        """Run until :meth:`stop`; end the session, flush and close the log on the way out."""
        tasks = [asyncio.ensure_future(s.run()) for s in self.supervisors]
        housekeeping = asyncio.ensure_future(self._housekeeping())
        sd_notify("READY=1\nSTATUS=recording")
        try:
            await self._stop.wait()
        finally:
            sd_notify("STOPPING=1")
            for sup in self.supervisors:
                sup.stop()
            pending = (await asyncio.wait(tasks, timeout=10))[1] if tasks else set()
            for task in [*pending, housekeeping]:
                task.cancel()
            for task in [*tasks, housekeeping]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.pipeline.end_session()
            self.clock_watch.check()
            self.epoch_tick()
            if self._pushing is not None:
                with contextlib.suppress(Exception):
                    await self._pushing
            if self.sender is not None:  # last push; what fails stays in the outbox
                self._pushing = None
                self._push_in_background()
                if self._pushing is not None:
                    with contextlib.suppress(Exception):
                        await self._pushing
            self.write_status()
            self.pipeline.close()
            if self.options.rescore_on_stop and self.pipeline.writer is not None:
                try:
                    self.rescore([Path(self.pipeline.writer.path)])
                except (SensordError, OSError) as exc:
                    self.problems.add("host", "final scoring failed", str(exc))
                    log.warning("final scoring failed: %s", exc)
                if self.sender is not None:
                    self._pushing = None
                    self._push_in_background()
                    if self._pushing is not None:
                        with contextlib.suppress(Exception):
                            await self._pushing
            if self._push_executor is not None:
                self._push_executor.shutdown(wait=False)
            self.close_scoring()
            self.write_status()

    def _push_in_background(self) -> None:
        if self.sender is None or (self._pushing is not None and not self._pushing.done()):
            return

        def push() -> Any:
            self._queue_sender_status()
            return self.sender.flush(max_retries=0)

        def done(fut: asyncio.Future[Any]) -> None:
            try:
                report = fut.result()
            except (SensordError, OSError) as exc:
                self.problems.add("host", "push failed", str(exc))
                self._last_push_ok = False
                return
            self._last_push_ok = not report.last_error
            if self._last_push_ok:
                self._last_push_ok_ns = self._now_ns()
            self.last_push = {"sent_lines": report.sent_lines,
                              "pending_lines": report.pending_lines,
                              "finished": report.finished,
                              "error": report.last_error}

        # One dedicated thread: the default executor would spread pushes over many threads
        # (and as many malloc arenas), which grows the resident set over a night.
        if self._push_executor is None:
            self._push_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sensord-push")
        loop = asyncio.get_running_loop()
        self._pushing = asyncio.ensure_future(loop.run_in_executor(self._push_executor, push))
        self._pushing.add_done_callback(done)

    def _now_ns(self) -> int:
        """The wall clock, clock steps repaired (as the exported samples)."""
        return int(self.clock_watch.correct(np.array([self.clock.wall_ns()]))[0])

    def _queue_sender_status(self) -> None:
        """Queue a ``sender_status`` point (operations dashboard) ahead of a push: the
        outbox backlog and quarantine as the push starts, and the outcome and time of the
        previous attempts. It travels with this push, so InfluxDB shows the Pi's delivery
        state as of its latest push. Skipped while the clock is not synchronised (its time
        would be wrong) and when the outbox cannot take it (recording comes first)."""
        outbox = self.outbox
        if outbox is None or not self.clock_watch.synced:
            return
        from sensord.store.points import sender_status_line

        try:
            stats = outbox.stats()
            line = sender_status_line(
                self.participant, self._now_ns(), backlog_points=stats.pending_lines,
                quarantined_points=stats.quarantined, push_ok=self._last_push_ok,
                last_ok_ns=self._last_push_ok_ns)
            outbox.add_lines([line], source="daemon sender status")
        except SensordError as exc:
            self.problems.add("host", "sender status not queued", str(exc))

    async def _housekeeping(self) -> None:
        """Clock checks, epoch ticks, pushes, the status file and the watchdog ping. If a
        step raises what it does not handle, the traceback is logged and the pings stop:
        systemd's watchdog then restarts the daemon (recording itself is not in here)."""
        try:
            await self._housekeeping_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping stopped (no more epoch ticks, pushes or watchdog "
                          "pings; under systemd the watchdog restarts the daemon)")
            raise

    async def _housekeeping_loop(self) -> None:
        opts = self.options
        wd = watchdog_interval_s()
        next_wd = time.monotonic()
        last_status = last_clock = last_epoch = last_push = self.clock.mono_ns()
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
                self._rotate_if_new_night()
                self._rescore_if_morning()
            if now - last_push >= opts.push_every_s * 1e9:
                last_push = now
                self._push_in_background()
            if now - last_status >= opts.status_every_s * 1e9:
                self.write_status()
                last_status = now
            if wd is not None and time.monotonic() >= next_wd:
                sd_notify("WATCHDOG=1")
                next_wd = time.monotonic() + wd

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot for ``sensord status``."""
        devices = {}
        tonight = self.clock.wall_ns() - 12 * 3600 * 10**9
        first_epoch = -(-tonight // EPOCH_NS)  # the first epoch e with e * EPOCH_NS >= tonight
        for sup in self.supervisors:
            st = sup.status
            ds = self.pipeline.devices.get(st.name)
            epochs = st.epochs_with_data
            # epoch_tick keeps about the last 12 h, so usually all count (min is cheap)
            n_epochs = (len(epochs) if not epochs or min(epochs) >= first_epoch
                        else len([e for e in epochs if e >= first_epoch]))
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
                "epochs_with_data_12h": n_epochs,
                "decoded_streams": ds.names() if ds is not None else [],
            }
        pipeline_problems = [
            {"kind": p.kind, "count": p.count, "message": p.message}
            for p in self.pipeline.problems
        ]
        backlog = None
        if self.outbox is not None:
            with contextlib.suppress(SensordError):
                st_out = self.outbox.stats()
                backlog = {"pending_lines": st_out.pending_lines,
                           "quarantined_lines": st_out.quarantined,
                           "last_success_ns": st_out.last_success_ns,
                           "last_error": st_out.last_error}
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
            "decode_problems": pipeline_problems,
            "outbox": backlog,
            "last_push": self.last_push,
            "events_recorded": self.events_recorded,
        }

    def write_status(self) -> None:
        path = self.options.status_path
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        # no indent: the C encoder, 5x cheaper; ASCII (ensure_ascii), written without a
        # text-mode file object (half the cost of Path.write_text, every 30 s)
        data = json.dumps(self.status()).encode("ascii")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:  # (its directory removed, disk full): recording goes on
            self.problems.add("host", "status not written", f"{path}: {exc.strerror or exc}")
