"""One exception tree for the whole package.

Pure code raises these with the context a user needs; the I/O edges (``cli.py``,
``daemon.py``, ``ble/``, ``store/`` sinks, ``web/``) catch them and report.
"""

from __future__ import annotations


class SensordError(Exception):
    """Base class of every error sensord raises on purpose."""


class ConfigError(SensordError):
    """A configuration file, environment variable or option is invalid.

    Parameters
    ----------
    message
        What is wrong and how to fix it.
    key
        The offending key (``devices[0].address``), when there is one.
    source
        Where the value came from (file path or ``env SENSORD_X``).
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.message = message
        self.key = key
        self.source = source
        where = ", ".join(p for p in (f"key {key!r}" if key else "", source or "") if p)
        super().__init__(f"{message} ({where})" if where else message)


class DecodeError(SensordError):
    """A GATT payload could not be decoded.

    Carries the profile, characteristic, reason and the payload in hex so the
    message alone is enough to reproduce the problem in a test.
    """

    def __init__(
        self,
        reason: str,
        *,
        profile: str,
        characteristic: str,
        payload: bytes = b"",
        index: int | None = None,
    ):
        self.reason = reason
        self.profile = profile
        self.characteristic = characteristic
        self.payload = bytes(payload)
        self.index = index
        at = f" (notification #{index})" if index is not None else ""
        super().__init__(
            f"{profile} {characteristic}: {reason}{at}; payload={self.payload.hex() or '<empty>'}"
        )


class ControlPointError(DecodeError):
    """A device answered a control-point request with a failure status."""

    def __init__(self, reason: str, *, status: int, **kwargs: object):
        self.status = status
        super().__init__(reason, **kwargs)  # type: ignore[arg-type]


class LogFormatError(SensordError):
    """A session log (``.blelog``) is unreadable or a record in it is corrupt."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = path or "<log>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")


class StagingError(SensordError):
    """Input to the sleep-staging core cannot be scored (wrong shapes, units, model)."""


class StoreError(SensordError):
    """The local store or a sink failed in a way the caller must hear about."""


class AuthError(StoreError):
    """A sink refused the credentials (HTTP 401/403). Retrying will not help."""


class AnnotationError(SensordError):
    """A participant's annotation is invalid; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class TransportError(SensordError):
    """A BLE transport failed (adapter missing, connect timeout, device gone)."""
