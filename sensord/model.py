"""Plain data shared by every layer. Pure: no I/O, no clock.

Conventions
-----------
* Time is UTC nanoseconds since the Unix epoch in ``int64`` (``t_ns``); monotonic
  clock readings are ``mono_ns``. Local time appears only at the edges.
* Units are part of every name: ``hr_bpm``, ``rr_ms``, ``acc_g``, ``ecg_uv``.
* Streams are columnar: one numpy array per column, equal lengths, sorted by time
  unless a docstring says otherwise.
* UUIDs are lower-case 128-bit strings (``0000180d-0000-1000-8000-00805f9b34fb``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

EPOCH_S = 30
"""Length of a scoring epoch in seconds (AASM)."""

EPOCH_NS = EPOCH_S * 1_000_000_000

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def sig_uuid(short: int) -> str:
    """Expand a 16-bit Bluetooth SIG UUID to its 128-bit lower-case form."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class RawNotification:
    """One GATT notification (or indication) exactly as it came off the air.

    Attributes
    ----------
    device
        The device's id in this session (its configured name or address).
    char_uuid
        Characteristic UUID, 128-bit lower case.
    wall_ns
        Host wall-clock time at reception, UTC ns (may step: see ``clock``).
    mono_ns
        Host monotonic clock at reception, ns (never steps; arbitrary origin).
    payload
        The characteristic value bytes.
    """

    device: str
    char_uuid: str
    wall_ns: int
    mono_ns: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HeartRateStream:
    """Heart rate as reported by the device (e.g. Heart Rate Measurement 0x2A37)."""

    t_ns: I64
    hr_bpm: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class BeatStream:
    """Beat-to-beat intervals; ``t_ns`` is the time of the beat that ends each interval."""

    t_ns: I64
    rr_ms: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class AccStream:
    """Acceleration in g, shape ``(n, 3)`` (x, y, z) with ``t_ns`` of shape ``(n,)``."""

    t_ns: I64
    acc_g: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class AccTimes:
    """The times of acceleration samples that were counted as they were decoded, without
    their values (``sensord.pipeline.load_session(count_acc=True)``)."""

    t_ns: I64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class CountStream:
    """Activity counts per fixed-length bin starting at ``t_ns`` (e.g. ActiGraph 1-s counts)."""

    t_ns: I64
    counts: F64
    bin_s: float

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class AccCounts:
    """A night's raw acceleration as the staging core's motion step makes it: the counts
    and how many samples cleaning left out (``sensord.staging.core.acc_counts``), here
    computed while the acceleration was decoded."""

    counts: CountStream
    dropped: int


def _empty_i64() -> I64:
    return np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class NightStreams:
    """Everything the staging core may use for one night; any stream may be absent.

    ``start_ns``/``end_ns`` bound the recording (the span to be scored).
    """

    start_ns: int
    end_ns: int
    hr: HeartRateStream | None = None
    beats: BeatStream | None = None
    acc: AccStream | None = None
    counts: CountStream | None = None
    off_body_t_ns: I64 = field(default_factory=_empty_i64)
    acc_counts: AccCounts | None = None
    """Counts of the acceleration computed as it was decoded (then ``acc`` is ``None``)."""


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A change in a device's connection, recorded in the session log beside notifications.

    ``kind`` is one of ``connecting`` (an attempt starts; ``detail`` ``backoff_s=S`` is the
    wait before it), ``connected``, ``services``, ``subscribed``, ``setup``,
    ``disconnected``, ``watchdog`` (no data for too long), ``error``; ``detail`` is a
    short human-readable string (disconnect reason, service list, control-point reply).
    """

    device: str
    kind: str
    wall_ns: int
    mono_ns: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """The host's wall clock jumped or its synchronisation state changed.

    ``step_ns`` is wall minus expected wall (from the monotonic clock) at detection;
    ``synced`` tells whether the system clock was synchronised (NTP) at that moment.
    """

    wall_ns: int
    mono_ns: int
    step_ns: int
    synced: bool


SessionEvent = RawNotification | DeviceEvent | ClockEvent
"""Anything the session log records, in arrival order."""


# --- streams added by the device decoders (sensord/devices) -------------------------------


@dataclass(frozen=True, slots=True)
class EcgStream:
    """Single-lead ECG in microvolts (e.g. Polar H10 PMD ECG, 130 Hz)."""

    t_ns: I64
    ecg_uv: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class PpiStream:
    """Peak-to-peak intervals from an optical sensor (Polar PMD PPI).

    ``t_ns`` is the time of the pulse peak that ends each interval, ``ppi_ms`` the
    interval, ``ppi_error_ms`` the device's error estimate, ``hr_bpm`` its heart
    rate at that pulse; ``blocker`` marks intervals the device flags as disturbed by
    movement, ``skin_contact`` / ``skin_contact_supported`` the contact bits.
    """

    t_ns: I64
    ppi_ms: F64
    ppi_error_ms: F64
    hr_bpm: F64
    blocker: npt.NDArray[np.bool_]
    skin_contact: npt.NDArray[np.bool_]
    skin_contact_supported: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class StepStream:
    """Cumulative step counter as reported by the device (it may reset, e.g. at midnight)."""

    t_ns: I64
    steps: I64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class BatteryStream:
    """Battery level in percent (Battery Level 0x2A19)."""

    t_ns: I64
    battery_pct: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class ContactStream:
    """Sensor (skin) contact as reported by the device, only where the device supports it."""

    t_ns: I64
    contact: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class EnergyStream:
    """Accumulated energy expended in kilojoules (Heart Rate Measurement flag bit 3)."""

    t_ns: I64
    energy_kj: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)
