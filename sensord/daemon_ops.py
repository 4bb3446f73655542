"""Operations around the daemon (I/O edge): run, scan, pair, status, doctor checks, log upkeep.

The CLI (``sensord run|scan|pair|status|doctor``) calls these; they build the transport,
session log, pipeline, outbox and :class:`sensord.daemon.Daemon` from the TOML config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sensord.backoff import BackoffPolicy
from sensord.ble.transport import Advertisement, Transport
from sensord.config import Config
from sensord.credentials import ensure_private_dir
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions
from sensord.devices import PROFILES, profile_for_services
from sensord.errors import ConfigError, SensordError
from sensord.timesource import Clock, ScaledClock, SystemClock, system_clock_synced

if TYPE_CHECKING:
    from sensord.blelog import BlelogWriter

log = logging.getLogger("sensord.daemon")

LOG_SYNC_S = 5.0
"""The session log is flushed into the file every this many seconds: a crash of the daemon
(even SIGKILL) loses at most this much, since what the file holds survives the process."""

LOG_FSYNC_S = 30.0
"""...and fsync'd every this many seconds: a power cut loses at most this much. An fsync
per 5 s spent about 0.2 s per hour inside fsync on the bench (cProfile of bench/daemon.py) and
wears an SD card six times as fast."""

LOG_ZLIB_LEVEL = 1
"""Deflate level of the live session log. Level 1 costs about a third of level 6's CPU on
a night of 50-Hz motion (bench/daemon.py) for a slightly larger file; old logs are
xz-compressed after ``daemon.compress_after_days`` anyway."""


def live_log_writer(path: Path, *, participant: str, tz: str, wall_ns: int,
                    mono_ns: int) -> BlelogWriter:
    """The daemon's session log writer (flush, fsync and deflate settings above)."""
    from sensord.blelog import BlelogWriter

    return BlelogWriter(path, participant=participant, tz=tz, host=socket.gethostname(),
                        wall_ns=wall_ns, mono_ns=mono_ns, fsync=True,
                        sync_interval_s=LOG_SYNC_S, fsync_interval_s=LOG_FSYNC_S,
                        level=LOG_ZLIB_LEVEL)

LIVE_BATCH = 64
"""Notifications per channel decoded together live, at most; the daemon also decodes what
is buffered at every epoch tick (30 s), so the rolling buffers are complete up to the tick
and a night takes a few thousand decode calls rather than one per 16 notifications. The
night's final score is computed from the log with the pipeline's default batching."""


# --------------------------------------------------------------------------- logging


class JournalFormatter(logging.Formatter):
    """``<priority>name: message`` lines that journald files under the right priority.

    Under systemd (``$JOURNAL_STREAM`` set) the journal adds timestamps itself; on a
    terminal a UTC timestamp is printed instead of the priority prefix.
    """

    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        if self.journal:
            return f"<{self._PRIORITY.get(record.levelno, 6)}>{record.name}: {msg}"
        when = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{when} {record.levelname.lower()} {record.name}: {msg}"


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("bumble", "bleak", "dbus_fast", "bleak_retry_connector"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- building blocks


def make_transport(cfg: Config, clock: Clock) -> Transport:
    """The radio the config asks for (``[daemon] transport``)."""
    spec = cfg.daemon.transport
    if spec == "bleak":
        from sensord.ble.bleak_transport import BleakTransport

        return BleakTransport(clock=clock, adapter=cfg.daemon.adapter or None)
    if spec.startswith("bumble:"):
        from sensord.ble.bumble_transport import BumbleTransport

        return BumbleTransport(spec.removeprefix("bumble:"), clock=clock)
    raise ConfigError(f"unknown transport {spec!r}", key="daemon.transport")


def logs_dir(cfg: Config) -> Path:
    return cfg.data_path / "logs"


def night_label(wall_ns: int, cfg: Config) -> str:
    """The night a moment belongs to: the local date of the evening it started.

    Local time before ``[night] end`` belongs to the previous evening's night.
    """
    local = datetime.fromtimestamp(wall_ns / 1e9, tz=cfg.tz)
    end = cfg.night.end_time
    day = local.date() - timedelta(days=1) if local.time() < end else local.date()
    return day.isoformat()


def in_morning(wall_ns: int, cfg: Config) -> bool:
    """Whether a moment lies in the ending part of the night window: local time from
    midnight to ``[night] end`` (for a window that wraps midnight), else from the window's
    middle to its end. A morning disconnect then ends the night (its final score)."""
    local = datetime.fromtimestamp(wall_ns / 1e9, tz=cfg.tz).time()
    start, end = cfg.night.start_time, cfg.night.end_time
    if start > end:
        return local < end
    mid_min = ((start.hour * 60 + start.minute) + (end.hour * 60 + end.minute)) // 2
    return mid_min <= local.hour * 60 + local.minute < end.hour * 60 + end.minute


def session_log_path(cfg: Config, wall_ns: int) -> Path:
    """One log per participant and night; a restarted daemon appends a new session to it."""
    return logs_dir(cfg) / f"{cfg.participant_id}_{night_label(wall_ns, cfg)}.blelog"


def status_path(cfg: Config) -> Path:
    """The daemon's status file: ``daemon.status_file``, else ``<data_dir>/status.json``."""
    if cfg.daemon.status_file:
        return Path(cfg.daemon.status_file).expanduser()
    return cfg.data_path / "status.json"


def ensure_status_dir(cfg: Config) -> Path:
    """The status file's directory, private (0700) like the data directory; created if
    missing. A directory that cannot be created is a :class:`ConfigError` naming the key
    (under systemd, ``RuntimeDirectory=sensord`` creates ``/run/sensord``)."""
    return ensure_private_dir(status_path(cfg).parent, "status directory",
                              key="daemon.status_file",
                              hint="; under systemd the unit's RuntimeDirectory=sensord "
                              "creates /run/sensord")


def daemon_options(cfg: Config) -> DaemonOptions:
    d = cfg.daemon
    return DaemonOptions(
        supervisor=SupervisorOptions(
            watchdog_s=d.watchdog_s,
            connect_timeout_s=d.connect_timeout_s,
            backoff=BackoffPolicy(min_s=d.reconnect_min_s, max_s=d.reconnect_max_s),
        ),
        status_path=status_path(cfg),
        push_every_s=cfg.sink.flush_interval_s,
        provisional_every_s=d.provisional_every_s,
    )


# --------------------------------------------------------------------------- run


async def run_daemon(cfg: Config, *, clock: Clock | None = None) -> Daemon:
    """``sensord run``: record every configured device until SIGTERM/SIGINT."""
    from sensord.pipeline import Pipeline
    from sensord.store.service import make_sender, open_store
    from sensord.store.sinks import make_sink

    clock = clock or SystemClock()
    if not cfg.devices:
        raise ConfigError("no devices configured: add one with `sensord pair ADDRESS`",
                          key="devices")
    cfg.ensure_data_dir()  # private (0700); refused if other users can read it
    ensure_status_dir(cfg)
    path = session_log_path(cfg, clock.wall_ns())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    wall0, mono0 = clock.read()
    writer = live_log_writer(path, participant=cfg.participant_id, tz=cfg.timezone,
                             wall_ns=wall0, mono_ns=mono0)
    pipeline = Pipeline(writer=writer, batch_size=LIVE_BATCH)
    store = open_store(cfg)
    sink = make_sink(cfg.sink)
    sender = make_sender(cfg, store, sink) if sink is not None else None
    transport = make_transport(cfg, clock)
    current = {"label": night_label(wall0, cfg)}

    def rotate(now_ns: int) -> BlelogWriter | None:
        """A new night: the next log (the daemon scores the finished one)."""
        label = night_label(now_ns, cfg)
        if label == current["label"]:
            return None
        current["label"] = label
        try:
            for action in maintain_logs(cfg, now_ns=time.time_ns(),
                                        pushed=store.stats().pending_lines == 0):
                log.info("logs: %s", action)
        except (SensordError, OSError) as exc:
            log.warning("log upkeep failed: %s", exc)
        wall, mono = clock.read()
        return live_log_writer(session_log_path(cfg, now_ns), participant=cfg.participant_id,
                               tz=cfg.timezone, wall_ns=wall, mono_ns=mono)

    daemon = Daemon(list(cfg.devices), transport, pipeline, clock=clock,
                    options=daemon_options(cfg), outbox=store, sender=sender,
                    participant=cfg.participant_id, tz=cfg.timezone, rotate=rotate,
                    morning=lambda now_ns: in_morning(now_ns, cfg))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    log.info("recording %s to %s (transport %s)",
             ", ".join(f"{d.name} [{d.profile}, {d.address}]" for d in cfg.devices), path,
             cfg.daemon.transport)
    from sensord.web.service import start_page

    page = start_page(cfg)  # the annotation page when [web] enabled; its problems only logged
    try:
        await daemon.run()
    finally:
        if page is not None:
            await page.stop()
        close = getattr(transport, "close", None)
        if close is not None:
            await close()
        if sink is not None:
            sink.close()
        store.close()
        log.info("stopped; log %s closed", path)
    return daemon


def scaled_clock(time_scale: float) -> Clock:
    """``--time-scale`` (tests, demos): a clock running ``time_scale`` times real time."""
    if time_scale == 1.0:
        return SystemClock()
    return ScaledClock(speed=time_scale, wall0_ns=time.time_ns(), mono0_ns=time.monotonic_ns())


# --------------------------------------------------------------------------- scan / pair


@dataclass(frozen=True, slots=True)
class SeenDevice:
    advertisement: Advertisement
    profile: str | None


async def scan(cfg: Config, timeout_s: float) -> list[SeenDevice]:
    """Nearby BLE devices with RSSI and the profile sensord recognises (if any)."""
    transport = make_transport(cfg, SystemClock())
    try:
        found = await transport.scan(timeout_s=timeout_s)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            await close()
    return [SeenDevice(a, profile_for_services(a.service_uuids)) for a in found]


_ADDRESS_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def pair(config_path: Path, cfg: Config, address: str, *, role: str, name: str | None,
         profile: str | None, seen: list[SeenDevice] | None = None) -> str:
    """Add a ``[[devices]]`` entry to the config file; returns the text appended.

    The profile is taken from ``profile``, else from a scan result for ``address``.
    """
    if not _ADDRESS_RE.match(address):
        raise ConfigError(f"{address!r} is not a Bluetooth address (AA:BB:CC:DD:EE:FF)",
                          key="address")
    address = address.upper()
    if any(d.address.upper() == address for d in cfg.devices):
        raise ConfigError(f"{address} is already configured", key="devices",
                          source=str(config_path))
    if profile is None:
        match = [s for s in seen or [] if s.advertisement.address.upper() == address]
        profile = match[0].profile if match else None
        if profile is None:
            raise ConfigError(
                f"could not recognise {address} from a scan; pass --profile "
                f"({', '.join(PROFILES)})", key="profile")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}",
                          key="profile")
    name = name or role
    if any(d.name == name for d in cfg.devices):
        raise ConfigError(f"a device named {name!r} exists; pass --name", key="devices")
    block = (f'\n[[devices]]\nname = "{name}"\naddress = "{address}"\n'
             f'profile = "{profile}"\nrole = "{role}"\n')
    text = config_path.read_text() if config_path.exists() else ""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text.rstrip("\n") + "\n" + block if text else block.lstrip("\n"))
    return block


# --------------------------------------------------------------------------- status


def read_status(cfg: Config) -> dict[str, Any]:
    """The running daemon's last status snapshot plus liveness and outbox figures."""
    from sensord.store.local import LocalStore

    path = status_path(cfg)
    if not path.exists():
        raise SensordError(f"no status at {path}: is `sensord run` running with this config?")
    st: dict[str, Any] = json.loads(path.read_text())
    pid = int(st.get("pid", 0))
    try:
        os.kill(pid, 0)
        st["running"] = True
    except (ProcessLookupError, PermissionError, OverflowError):
        st["running"] = pid > 0 and Path(f"/proc/{pid}").exists()
    st["age_s"] = (time.time_ns() - int(st.get("written_wall_ns", 0))) / 1e9
    if cfg.outbox_path.exists():
        store = LocalStore(cfg.outbox_path)
        try:
            o = store.stats()
            st["outbox"] = {"pending_lines": o.pending_lines, "quarantined_lines": o.quarantined,
                            "last_success_ns": o.last_success_ns, "last_error": o.last_error}
        finally:
            store.close()
    return st


def _ago(wall_ns: int | None, now_ns: int) -> str:
    if not wall_ns:
        return "never"
    s = (now_ns - wall_ns) / 1e9
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def format_status(st: dict[str, Any]) -> str:
    now = int(st.get("written_wall_ns", time.time_ns()))
    lines = [
        f"daemon: {'running' if st.get('running') else 'NOT running'} "
        f"(pid {st.get('pid')}, status written {st.get('age_s', 0):.0f} s ago)",
    ]
    clock = st.get("clock", {})
    sync = "synchronised" if clock.get("synced") else "NOT synchronised (timestamps repaired later)"
    lines.append(f"clock: {sync}; steps seen: {clock.get('steps', 0)}")
    for name, d in st.get("devices", {}).items():
        coverage = d.get("epochs_with_data_12h", 0) * 30 / 3600
        batt = f"{d['battery_pct']}%" if d.get("battery_pct") is not None else "?"
        lines.append(
            f"{name} [{d.get('profile')}, {d.get('address')}]: "
            f"{'connected' if d.get('connected') else d.get('state')}; last notification "
            f"{_ago(d.get('last_notification_wall_ns'), now)}; battery {batt}; "
            f"coverage last 12 h {coverage:.1f} h; reconnects {max(0, d.get('connects', 0) - 1)}, "
            f"watchdog {d.get('watchdogs', 0)}"
        )
    out = st.get("outbox")
    if out:
        lines.append(f"outbox: {out['pending_lines']} lines waiting, "
                     f"{out['quarantined_lines']} quarantined"
                     + (f"; last error: {out['last_error']}" if out.get("last_error") else ""))
    for device, kinds in st.get("problems", {}).items():
        lines.append(f"problems {device}: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- doctor


def _bluez_version() -> str | None:
    for cmd in (["bluetoothctl", "--version"], ["bluetoothd", "--version"]):
        exe = shutil.which(cmd[0]) or (f"/usr/libexec/bluetooth/{cmd[0]}"
                                       if os.path.exists(f"/usr/libexec/bluetooth/{cmd[0]}")
                                       else None)
        if exe is None:
            continue
        try:
            out = subprocess.run([exe, cmd[1]], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"(\d+\.\d+)", out.stdout + out.stderr)
        if m:
            return m.group(1)
    return None


async def _bluez_adapters() -> list[tuple[str, bool]]:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        intro = await bus.introspect("org.bluez", "/")
        om = bus.get_proxy_object("org.bluez", "/", intro).get_interface(
            "org.freedesktop.DBus.ObjectManager")
        objects = await om.call_get_managed_objects()  # type: ignore[attr-defined]
    finally:
        bus.disconnect()
    out = []
    for path, ifaces in sorted(objects.items()):
        adapter = ifaces.get("org.bluez.Adapter1")
        if adapter is not None:
            powered = adapter.get("Powered")
            out.append((path.rsplit("/", 1)[-1], bool(powered.value if powered else False)))
    return out


def doctor_checks(cfg: Config) -> tuple[bool, list[str]]:
    """Adapter, BlueZ version, permissions, clock, disk: one line each, and overall ok.

    Radio problems count against ``ok`` only when devices are configured: a researcher's
    machine that only pushes or backfills needs no Bluetooth.
    """
    ok = True
    lines: list[str] = []
    radio_ok = True
    if cfg.daemon.transport == "bleak":
        version = _bluez_version()
        lines.append(f"bluez: {version or 'version unknown (bluetoothctl not found)'}")
        if version is not None and tuple(map(int, version.split("."))) < (5, 55):
            radio_ok = False
            lines.append("bluez: TOO OLD, bleak needs 5.55 or newer")
        try:
            adapters = asyncio.run(asyncio.wait_for(_bluez_adapters(), 5))
        except Exception as exc:  # D-Bus refused, bluetoothd not running, no permission
            radio_ok = False
            lines.append(f"adapter: CANNOT ASK BlueZ over D-Bus ({type(exc).__name__}: {exc}); "
                         "is bluetoothd running and may this user use the system bus?")
        else:
            if not adapters:
                radio_ok = False
                lines.append("adapter: NONE found (no Bluetooth controller, or it is blocked: "
                             "`rfkill list`)")
            for name, powered in adapters:
                if cfg.daemon.adapter and name != cfg.daemon.adapter:
                    continue
                lines.append(f"adapter: {name} {'powered' if powered else 'NOT POWERED'}")
                radio_ok = radio_ok and powered
    else:
        lines.append(f"transport: {cfg.daemon.transport} (bumble, no BlueZ needed)")
    if not radio_ok and not cfg.devices:
        lines.append("radio: no devices configured, so the radio checks above are advisory")
    ok = radio_ok or not cfg.devices
    try:
        import grp

        groups = {grp.getgrgid(g).gr_name for g in os.getgroups()}
        lines.append(f"user: {os.getuid()} groups {', '.join(sorted(groups)) or '-'}"
                     + ("" if "bluetooth" in groups or os.getuid() == 0
                        else " (not in 'bluetooth': BlueZ may refuse, see docs/daemon.md)"))
    except (ImportError, KeyError):
        pass
    synced = system_clock_synced()
    lines.append("clock: " + ("synchronised (NTP)" if synced
                              else "NOT synchronised: timestamps will be repaired once it is"))
    data = cfg.data_path
    try:
        cfg.ensure_data_dir()
    except ConfigError as exc:
        ok = False
        lines.append(f"disk: REFUSED: {exc.message}")
        return ok, lines
    try:
        probe = data / ".doctor-probe"
        probe.write_bytes(b"x")
        probe.unlink()
        usage = shutil.disk_usage(data)
        free_gb = usage.free / 1e9
        lines.append(f"disk: {data} writable, {free_gb:.1f} GB free")
        if free_gb < 1.0:
            ok = False
            lines.append("disk: LESS THAN 1 GB FREE (a night of logs is 10-40 MB)")
    except OSError as exc:
        ok = False
        lines.append(f"disk: {data} NOT WRITABLE ({exc})")
    status = status_path(cfg)
    later = ("" if status.parent.is_dir()  # not a failure: systemd creates /run/sensord
             else " (its directory is created when the service starts: "
             "RuntimeDirectory=sensord in the unit)")
    lines.append(f"status file: {status}{later}")
    return ok, lines


# --------------------------------------------------------------------------- log upkeep


def maintain_logs(cfg: Config, *, now_ns: int, pushed: bool) -> list[str]:
    """Compress old session logs (xz, verified) and delete expired ones once pushed.

    ``pushed``: the outbox is empty, so everything the logs produced is in the sink.
    Logs are never deleted while anything is still waiting to be pushed.
    """
    actions: list[str] = []
    root = logs_dir(cfg)
    if not root.is_dir():
        return actions
    day_ns = 86_400 * 10**9
    for path in sorted(root.glob("*.blelog")):
        age_days = (now_ns - path.stat().st_mtime_ns) / day_ns
        if age_days < cfg.daemon.compress_after_days:
            continue
        target = path.with_name(path.name + ".xz")
        raw = path.read_bytes()
        packed = lzma.compress(raw, preset=6)
        if lzma.decompress(packed) != raw:
            raise SensordError(f"{path}: xz round trip failed; log left as is")
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(packed)
        os.replace(tmp, target)
        os.utime(target, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
        path.unlink()
        actions.append(f"compressed {path.name} ({len(raw)} -> {len(packed)} bytes)")
    if cfg.daemon.log_retention_days and pushed:
        for path in sorted(root.glob("*.blelog.xz")):
            if (now_ns - path.stat().st_mtime_ns) / day_ns > cfg.daemon.log_retention_days:
                path.unlink()
                actions.append(f"deleted {path.name} (older than "
                               f"{cfg.daemon.log_retention_days} days, everything pushed)")
    return actions
