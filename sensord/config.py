"""Configuration: a TOML file (``tomllib``) overridden by ``SENSORD_*`` environment variables.

Precedence, lowest first: built-in defaults < the TOML file < environment variables.
Every key is known in advance; an unknown key in the file or an unknown ``SENSORD_*``
variable is an error naming the key and where it came from (a typo must never be
silently ignored). Secrets (InfluxDB password or token) are never read from the main
file: the file may only name a file (``password_file``) or an environment variable
(``password_env``) that holds them, or ``SENSORD_SINK_PASSWORD`` / ``SENSORD_SINK_TOKEN``
are set. See ``docs/config.md`` for every key and its default.

Environment variables: ``SENSORD_<KEY>`` for top-level keys (``SENSORD_PARTICIPANT_ID``)
and ``SENSORD_<SECTION>_<KEY>`` for sections (``SENSORD_SINK_URL``,
``SENSORD_WEB_PORT``). ``SENSORD_CONFIG`` names the config file. Devices can only be
configured in the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sensord.credentials import (
    check_private_file,
    check_url_has_no_credentials,
    ensure_private_dir,
    register_secret,
)
from sensord.errors import ConfigError
from sensord.privacy import DEFAULT_PSEUDONYM_PATTERN, validate_pseudonym
from sensord.store.schema import DEVICE_ROLES, PARTICIPANT

DEFAULT_CONFIG_PATHS = (Path("/etc/sensord/sensord.toml"),)
ENV_PREFIX = "SENSORD_"
ENV_CONFIG_PATH = "SENSORD_CONFIG"
SINK_KINDS = ("influxdb1", "influxdb2", "none")


@dataclass(frozen=True)
class DeviceConfig:
    """One wearable. ``profile`` selects the decoder module (e.g. ``polar_h10``)."""

    name: str
    address: str
    profile: str
    role: str = "chest"


@dataclass(frozen=True)
class NightConfig:
    """Local-time window that belongs to one night (may wrap midnight)."""

    start: str = "18:00"
    end: str = "12:00"

    @property
    def start_time(self) -> time:
        return _parse_hhmm(self.start, "night.start")

    @property
    def end_time(self) -> time:
        return _parse_hhmm(self.end, "night.end")


@dataclass(frozen=True)
class SinkConfig:
    """Where samples go. ``kind = "none"`` keeps everything in the local outbox only."""

    kind: str = "none"
    url: str = "http://127.0.0.1:8086"
    database: str = "sensord"
    retention_policy: str = ""
    username: str = ""
    password_file: str = ""
    password_env: str = ""
    token_file: str = ""
    token_env: str = ""
    org: str = ""
    bucket: str = ""
    batch_lines: int = 5000
    batch_bytes: int = 1_000_000
    flush_interval_s: float = 10.0
    timeout_s: float = 10.0
    gzip: bool = True
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    ca_bundle: str = ""
    verify_tls: bool = True
    # filled from SENSORD_SINK_PASSWORD / SENSORD_SINK_TOKEN only (never from the file)
    password_from_env: str = field(default="", repr=False)
    token_from_env: str = field(default="", repr=False)

    def password(self) -> str:
        """The InfluxDB 1.x password: env ``SENSORD_SINK_PASSWORD``, ``password_env`` or
        ``password_file`` (trailing newline stripped); ``""`` when none is configured."""
        return _secret(
            self.password_from_env, self.password_env, self.password_file, "sink.password"
        )

    def token(self) -> str:
        """The InfluxDB 2.x/3.x token, resolved like :meth:`password`."""
        return _secret(self.token_from_env, self.token_env, self.token_file, "sink.token")


@dataclass(frozen=True)
class WebConfig:
    """The participant annotation page; ``sensord run`` serves it only when ``enabled``."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = 8080
    # area security (issue 8): a session ends after this long unused, and this long after login
    session_idle_h: float = 24.0
    session_max_h: float = 720.0


@dataclass(frozen=True)
class DaemonConfig:
    """Supervisor timings."""

    watchdog_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    log_retention_days: int = 365
    # area daemon (issue 5): radio and log housekeeping
    transport: str = "bleak"
    adapter: str = ""
    connect_timeout_s: float = 20.0
    compress_after_days: int = 7
    provisional_every_s: float = 30.0
    status_file: str = ""  # "" -> <data_dir>/status.json


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``source`` lists where values came from."""

    participant_id: str = "DEMO01"
    timezone: str = "UTC"
    pseudonym_pattern: str = DEFAULT_PSEUDONYM_PATTERN
    data_dir: str = "~/.local/share/sensord"
    devices: tuple[DeviceConfig, ...] = ()
    night: NightConfig = field(default_factory=NightConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    web: WebConfig = field(default_factory=WebConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    source: tuple[str, ...] = ()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def outbox_path(self) -> Path:
        """The SQLite local store (outbox, quarantine, nights, annotations)."""
        return self.data_path / "sensord.sqlite"

    def ensure_data_dir(self) -> Path:
        """The data directory, created mode 0700 if missing; one that other users can
        read, write or enter is refused (:class:`ConfigError` naming it and the ``chmod``)."""
        return ensure_private_dir(self.data_path, key="data_dir")


SECTIONS: dict[str, type] = {
    "night": NightConfig,
    "sink": SinkConfig,
    "web": WebConfig,
    "daemon": DaemonConfig,
}
_TOP_SCALARS = ("participant_id", "timezone", "data_dir", "pseudonym_pattern")
_ENV_ONLY = {"password_from_env", "token_from_env"}
_FORBIDDEN_SECRETS = {"password", "token"}


def _parse_hhmm(value: str, key: str) -> time:
    m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value)
    if not m:
        raise ConfigError(f"expected local time HH:MM, got {value!r}", key=key)
    return time(int(m.group(1)), int(m.group(2)))


def _secret(from_env: str, env_name: str, file_name: str, key: str) -> str:
    """Resolve one secret; every value found is registered for log redaction."""
    if from_env:
        return register_secret(from_env)
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(f"environment variable {env_name} is not set", key=key + "_env")
        return register_secret(value)
    if file_name:
        path = Path(file_name).expanduser()
        try:
            check_private_file(path)  # group/other access refused, naming the file and chmod
        except ConfigError as exc:
            raise ConfigError(str(exc), key=key + "_file") from None
        try:
            return register_secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(
                f"cannot read secret file {path}: {exc.strerror}", key=key + "_file"
            ) from None
    return ""


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    """Check/convert one scalar to the dataclass field type; env strings are parsed."""
    from_env = source.startswith("env ")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise ConfigError(f"expected true or false, got {value!r}", key=key, source=source)
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ConfigError(f"expected an integer, got {value!r}", key=key, source=source)
    if typ is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"expected a number, got {value!r}", key=key, source=source)
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"expected a string, got {value!r}", key=key, source=source)
    raise AssertionError(f"unsupported config type {typ}")  # pragma: no cover


def _build(cls: type, data: Mapping[str, Any], prefix: str, sources: Mapping[str, str]) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        src = sources.get(full, "")
        if key in _FORBIDDEN_SECRETS and cls is SinkConfig and not src.startswith("env "):
            raise ConfigError(
                f"secrets are not allowed in the config file; use {key}_file, {key}_env "
                f"or the environment variable SENSORD_SINK_{key.upper()}",
                key=full,
                source=src,
            )
        if key not in names or (key in _ENV_ONLY and not src.startswith("env ")):
            raise ConfigError("unknown key", key=full, source=src)
        kwargs[key] = _coerce(value, hints[key], full, src)
    return cls(**kwargs)


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Map ``SENSORD_*`` variables to (nested dict, key -> source)."""
    nested: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        src = f"env {name}"
        if rest in _TOP_SCALARS:
            nested[rest] = value
            sources[rest] = src
            continue
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if section == "sink" and key in _FORBIDDEN_SECRETS:
                    key = f"{key}_from_env"
                nested.setdefault(section, {})[key] = value
                sources[f"{section}.{key}"] = src
                break
        else:
            raise ConfigError("unknown environment variable (typo?)", key=rest, source=src)
    return nested, sources


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load the configuration.

    Parameters
    ----------
    path
        TOML file. ``None`` uses ``$SENSORD_CONFIG`` or ``/etc/sensord/sensord.toml`` if
        either exists, otherwise defaults + environment only.
    env
        Environment (default ``os.environ``); ``SENSORD_*`` entries override the file.

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML (with line), unknown key, wrong type, secret in the
        file, invalid timezone, time, sink kind, role, port or duplicate device name.
    """
    env = os.environ if env is None else env
    file_data: dict[str, Any] = {}
    used: list[str] = []
    if path is None and env.get(ENV_CONFIG_PATH):
        path = env[ENV_CONFIG_PATH]
    if path is None:
        path = next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)
    sources: dict[str, str] = {}
    if path is not None:
        p = Path(path)
        try:
            file_data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", source=str(p)) from None
        used.append(str(p))
        for key, value in file_data.items():
            if isinstance(value, dict):
                for sub in value:
                    sources[f"{key}.{sub}"] = str(p)
            else:
                sources[key] = str(p)
    env_data, env_sources = _env_overrides(env)
    if env_data:
        used.append("environment")
    sources.update(env_sources)
    merged: dict[str, Any] = {
        k: (dict(v) if isinstance(v, dict) else v) for k, v in file_data.items()
    }
    for key, value in env_data.items():
        if isinstance(value, dict):
            base = merged.get(key, {})
            if not isinstance(base, dict):
                raise ConfigError("expected a table", key=key, source=sources.get(key))
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return _validate(_from_dict(merged, sources, str(path) if path else ""), tuple(used))


def _from_dict(data: Mapping[str, Any], sources: Mapping[str, str], file_src: str) -> Config:
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        src = sources.get(key, file_src)
        if key in _TOP_SCALARS:
            kwargs[key] = _coerce(value, str, key, src)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError("expected a table [" + key + "]", key=key, source=src)
            kwargs[key] = _build(SECTIONS[key], value, key + ".", sources)
        elif key == "devices":
            if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
                raise ConfigError("expected [[devices]] tables", key=key, source=src)
            devs = []
            for i, d in enumerate(value):
                sub = {f"devices[{i}].{k}": file_src for k in d}
                for required in ("name", "address", "profile"):
                    if required not in d:
                        raise ConfigError("missing key", key=f"devices[{i}].{required}", source=src)
                devs.append(_build(DeviceConfig, d, f"devices[{i}].", sub))
            kwargs["devices"] = tuple(devs)
        elif key in _FORBIDDEN_SECRETS:
            raise ConfigError(
                "secrets belong in [sink] password_file/password_env or token_file/token_env",
                key=key,
                source=src,
            )
        else:
            raise ConfigError("unknown key", key=key, source=src)
    return Config(**kwargs)


def _validate(cfg: Config, used: tuple[str, ...]) -> Config:
    src = ", ".join(used) or "defaults"
    reason = PARTICIPANT.check(cfg.participant_id)
    if reason or len(cfg.participant_id) > 64:
        raise ConfigError(
            f"participant_id must be 1-64 printable characters ({reason or 'too long'}); "
            "it becomes the InfluxDB tag 'participant'",
            key="participant_id",
            source=src,
        )
    try:
        validate_pseudonym(cfg.participant_id, cfg.pseudonym_pattern)
    except ConfigError as exc:
        raise ConfigError(exc.message, key=exc.key, source=src) from None
    try:
        ZoneInfo(cfg.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown IANA timezone {cfg.timezone!r} (e.g. Europe/Berlin)",
            key="timezone",
            source=src,
        ) from None
    for key in ("start", "end"):
        value = getattr(cfg.night, key)
        if not re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value):
            raise ConfigError(
                f"expected local time HH:MM, got {value!r}", key=f"night.{key}", source=src
            )
    if cfg.sink.kind not in SINK_KINDS:
        raise ConfigError(
            f"unknown sink kind {cfg.sink.kind!r}; expected one of {', '.join(SINK_KINDS)}",
            key="sink.kind",
            source=src,
        )
    if "@" in cfg.sink.url:  # user:password@ would end up in logs and error messages
        try:
            check_url_has_no_credentials(cfg.sink.url, key="sink.url")
        except ConfigError as exc:  # the message never repeats the URL
            raise ConfigError(exc.message, key="sink.url", source=src) from None
    if cfg.sink.kind != "none" and not re.match(r"https?://[^/]+", cfg.sink.url):
        raise ConfigError(
            f"expected an http(s):// URL, got {cfg.sink.url!r}", key="sink.url", source=src
        )
    if cfg.sink.kind == "influxdb1" and not cfg.sink.database:
        raise ConfigError("influxdb1 needs a database", key="sink.database", source=src)
    if cfg.sink.kind == "influxdb2":
        for key in ("org", "bucket"):
            if not getattr(cfg.sink, key):
                raise ConfigError(f"influxdb2 needs {key}", key=f"sink.{key}", source=src)
    for key in ("batch_lines", "batch_bytes"):
        if getattr(cfg.sink, key) < 1:
            raise ConfigError("must be at least 1", key=f"sink.{key}", source=src)
    for key in ("flush_interval_s", "timeout_s", "retry_initial_s", "retry_max_s"):
        if getattr(cfg.sink, key) <= 0:
            raise ConfigError("must be positive", key=f"sink.{key}", source=src)
    if cfg.sink.retry_max_s < cfg.sink.retry_initial_s:
        raise ConfigError("must be >= sink.retry_initial_s", key="sink.retry_max_s", source=src)
    if cfg.web.session_idle_h <= 0 or cfg.web.session_max_h < cfg.web.session_idle_h:
        raise ConfigError(
            "need 0 < session_idle_h <= session_max_h", key="web.session_max_h", source=src
        )
    if not 1 <= cfg.web.port <= 65535:
        raise ConfigError(f"port {cfg.web.port} out of range 1-65535", key="web.port", source=src)
    if cfg.daemon.reconnect_max_s < cfg.daemon.reconnect_min_s or cfg.daemon.reconnect_min_s <= 0:
        raise ConfigError(
            "need 0 < reconnect_min_s <= reconnect_max_s", key="daemon.reconnect_max_s", source=src
        )
    if cfg.daemon.watchdog_s <= 0:
        raise ConfigError("must be positive", key="daemon.watchdog_s", source=src)
    if cfg.daemon.transport != "bleak" and not cfg.daemon.transport.startswith("bumble:"):
        raise ConfigError(
            'must be "bleak" (BlueZ) or "bumble:<hci transport>", e.g. "bumble:usb:0"',
            key="daemon.transport", source=src,
        )
    if cfg.daemon.connect_timeout_s <= 0:
        raise ConfigError("must be positive", key="daemon.connect_timeout_s", source=src)
    if cfg.daemon.compress_after_days < 0:
        raise ConfigError("must be >= 0", key="daemon.compress_after_days", source=src)
    if not 30 <= cfg.daemon.provisional_every_s <= 3600:
        raise ConfigError("must be 30-3600 s (the epoch tick is 30 s)",
                          key="daemon.provisional_every_s", source=src)
    status_file = cfg.daemon.status_file
    if status_file and (not Path(status_file).expanduser().is_absolute()
                        or status_file.endswith("/")):
        raise ConfigError(f"expected an absolute file path, got {status_file!r}",
                          key="daemon.status_file", source=src)
    if cfg.daemon.log_retention_days < 0:
        raise ConfigError(
            "must be >= 0 (0 keeps logs forever)", key="daemon.log_retention_days", source=src
        )
    seen: set[str] = set()
    for i, dev in enumerate(cfg.devices):
        if dev.role not in DEVICE_ROLES:
            raise ConfigError(
                f"unknown role {dev.role!r}; expected one of {', '.join(DEVICE_ROLES)}",
                key=f"devices[{i}].role",
                source=src,
            )
        if dev.name in seen:
            raise ConfigError(
                f"duplicate device name {dev.name!r}", key=f"devices[{i}].name", source=src
            )
        seen.add(dev.name)
    return dataclasses.replace(cfg, source=used)
