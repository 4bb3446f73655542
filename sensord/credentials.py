"""Credentials (InfluxDB tokens and passwords, the study secret) and private directories.

Secrets come from a file or an environment variable, never from the main config
file. A secrets file or data directory that other users can read is refused with
a message naming the file and the ``chmod`` that fixes it: sensord will not
silently use a leaked secret or write a participant's data where others can read it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sensord.errors import ConfigError

_REDACTED = "***"
MIN_REDACT_CHARS = 4
"""Shorter values are not masked (masking ``"ab"`` everywhere would garble every log)."""


def check_private_file(path: Path) -> None:
    """Refuse a secrets file that is not a regular file private to its owner.

    Raises
    ------
    ConfigError
        If the file is missing, not a regular file, or readable/writable by group or others.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"secrets file {path} does not exist") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"secrets file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"secrets file {path} is accessible to other users (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}"
        )


def read_secret(*, file: str | Path | None = None, env: str | None = None,
                what: str = "secret") -> str:
    """Read a secret from a private file or an environment variable (file wins).

    Trailing newlines are stripped. Raises :class:`ConfigError` when neither source
    gives a non-empty value, naming where it looked (never the value).
    """
    if file is not None:
        path = Path(file).expanduser()
        check_private_file(path)
        value = path.read_text(encoding="utf-8").strip("\r\n")
        if not value:
            raise ConfigError(f"{what}: secrets file {path} is empty")
        return register_secret(value)
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set or empty")
        return register_secret(value)
    raise ConfigError(f"{what}: give a file or an environment variable to read it from")


def ensure_private_dir(path: str | Path, what: str = "data directory", *,
                       key: str | None = None, hint: str = "") -> Path:
    """Create ``path`` (and parents) private to the current user, or check an existing one.

    A new directory gets mode 0700. An existing one that its group or other users can
    read, write or enter is refused with the ``chmod`` that fixes it, and one that cannot
    be created is refused with the reason; each :class:`ConfigError` names it as ``what``,
    carries the config ``key`` it came from and ends with ``hint``.
    """
    directory = Path(path).expanduser()
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise ConfigError(f"cannot create {what} {directory} ({exc.strerror or exc}){hint}",
                              key=key) from None
        return directory
    if not directory.is_dir():
        raise ConfigError(f"{what} {directory} exists and is not a directory{hint}", key=key)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{what} {directory} is accessible to other users (mode {mode:04o}); "
            f"fix it with: chmod 700 {directory}", key=key,
        )
    return directory


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each (non-trivial) secret in ``text`` with ``***``."""
    for secret in secrets:
        if len(secret) >= MIN_REDACT_CHARS:
            text = text.replace(secret, _REDACTED)
    return text


def _scrub(record: logging.LogRecord, secrets: tuple[str, ...]) -> None:
    """Mask ``secrets`` in a record's message and traceback, in place.

    A traceback that holds a secret is rendered, masked and appended to the message (the
    exception itself is dropped from the record), so every formatter prints it masked.
    """
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed call: keep the raw parts, masked
        message = f"{record.msg} {record.args}"
    cleaned = redact(message, secrets)
    if record.exc_info and record.exc_info[1] is not None:
        trace = logging.Formatter().formatException(record.exc_info)
        masked = redact(trace, secrets)
        if masked != trace:
            cleaned = f"{cleaned}\n{masked}"
            record.exc_info, record.exc_text = None, None
    if record.stack_info:
        record.stack_info = redact(record.stack_info, secrets)
    if cleaned != message:
        record.msg, record.args = cleaned, None


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in every record it passes."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_REDACT_CHARS)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            _scrub(record, self._secrets)
        return True


_registered: set[str] = set()
_base_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _base_factory is not None
    record = _base_factory(*args, **kwargs)
    if _registered:
        _scrub(record, tuple(sorted(_registered, key=len, reverse=True)))
    return record


def register_secret(value: str) -> str:
    """Mask ``value`` in every log record made from now on, by any logger and handler.

    Called wherever a secret is read (:func:`read_secret`, the sink password and token in
    :mod:`sensord.config`), so no set-up step can be forgotten. Installs a log-record
    factory once (records are masked when created, before any handler or filter sees
    them, including handlers added later). Returns ``value``.
    """
    global _base_factory
    if len(value) >= MIN_REDACT_CHARS:
        _registered.add(value)
        if _base_factory is None:
            _base_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)
    return value


def registered_secrets() -> frozenset[str]:
    """The secrets registered so far (the CLI masks them in the errors it prints)."""
    return frozenset(_registered)


def check_url_has_no_credentials(url: str, *, key: str = "sink.url") -> str:
    """Refuse a URL that embeds a user name or password (they would end up in logs)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "the URL must not contain credentials; put the password or token in a "
            "secrets file or environment variable instead",
            key=key,
        )
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"the URL scheme must be http or https, not {parts.scheme!r}", key=key)
    return url
