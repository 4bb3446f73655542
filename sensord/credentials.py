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
from collections.abc import Iterable
from pathlib import Path

from sensord.errors import ConfigError

_REDACTED = "***"


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
        return value
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set or empty")
        return value
    raise ConfigError(f"{what}: give a file or an environment variable to read it from")


def ensure_private_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) private to the current user, or check an existing one.

    A new directory gets mode 0700. An existing one that other users can read,
    write or enter is refused with the ``chmod`` that fixes it.
    """
    directory = Path(path).expanduser()
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        return directory
    if not directory.is_dir():
        raise ConfigError(f"data directory {directory} exists and is not a directory")
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o007:
        raise ConfigError(
            f"data directory {directory} is accessible to other users (mode {mode:04o}); "
            f"fix it with: chmod 700 {directory}"
        )
    return directory


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each (non-trivial) secret in ``text`` with ``***``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in every record it passes."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = tuple(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            cleaned = redact(message, self._secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(
                    logging.Formatter().formatException(record.exc_info), self._secrets
                )
                record.exc_info = None
        return True


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
