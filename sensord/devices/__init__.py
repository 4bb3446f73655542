"""GATT device profiles: UUIDs, setup sequences and pure decoders.

The pipeline uses four functions:

* :func:`decode_batch` -- a whole batch of one characteristic's notifications into
  columnar streams (numpy, vectorised), one :class:`~sensord.errors.DecodeError` per
  malformed payload and the rest kept;
* :func:`decode_one` -- one payload into JSON-able Python values (``sensord decode``);
  this is also the plain per-notification path the batch path is benchmarked against;
* :func:`is_known` -- whether a characteristic has a decoder;
* :func:`profile_for_services` -- which profile a device's advertised/discovered
  services belong to; :data:`PROFILES` holds each profile's setup sequence as plain data
  the daemon executes (reads, subscriptions, control-point writes).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.devices import heart_rate as hrs
from sensord.devices import infinitime as itm
from sensord.devices import polar_pmd as pmd
from sensord.devices._common import DecodeContext, DecodeResult, decode_error, normalize_uuid
from sensord.errors import DecodeError

__all__ = [
    "CHARACTERISTICS",
    "PROFILES",
    "Characteristic",
    "DecodeContext",
    "DecodeResult",
    "Profile",
    "SetupStep",
    "characteristic",
    "decode_batch",
    "decode_one",
    "is_known",
    "normalize_uuid",
    "profile_for_services",
]

BatchDecoder = Callable[[Sequence[bytes], npt.NDArray[np.int64], DecodeContext], DecodeResult]
OneDecoder = Callable[[bytes], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Characteristic:
    """A characteristic sensord can decode."""

    uuid: str
    name: str
    profile: str
    batch: BatchDecoder
    one: OneDecoder


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One GATT operation of a profile's setup sequence.

    ``action`` is ``read`` (read once, record the value as a notification),
    ``subscribe`` (enable notifications/indications) or ``write`` (write ``value`` with
    response). For a write to a control point, ``response_char`` names the
    characteristic whose next notification/indication answers it: the daemon passes
    that answer to :func:`decode_one`, which raises
    :class:`~sensord.errors.ControlPointError` on a failure status. ``optional`` steps
    may fail (characteristic absent, feature unsupported) without aborting the setup.
    """

    action: str
    char_uuid: str
    value: bytes = b""
    response_char: str | None = None
    optional: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    """A device profile: the services that identify it and the setup to run on connect."""

    name: str
    title: str
    service_uuids: tuple[str, ...]
    setup: tuple[SetupStep, ...]


def _info_batch(char_uuid: str) -> BatchDecoder:
    key = hrs.DEVICE_INFORMATION_STRINGS[char_uuid]

    def batch(
        payloads: Sequence[bytes], recv: npt.NDArray[np.int64], ctx: DecodeContext
    ) -> DecodeResult:
        result = DecodeResult()
        for i, p in enumerate(payloads):
            try:
                result.info[key] = hrs.parse_info_string(char_uuid, p)
                result.n_decoded += 1
            except DecodeError as exc:
                exc.index = i
                result.errors.append(exc)
        return result

    return batch


def _info_one(char_uuid: str) -> OneDecoder:
    key = hrs.DEVICE_INFORMATION_STRINGS[char_uuid]
    return lambda p: {key: hrs.parse_info_string(char_uuid, p)}


def _body_location_batch(
    payloads: Sequence[bytes], recv: npt.NDArray[np.int64], ctx: DecodeContext
) -> DecodeResult:
    result = DecodeResult()
    for i, p in enumerate(payloads):
        try:
            result.info["body_sensor_location"] = hrs.parse_body_sensor_location(p)
            result.n_decoded += 1
        except DecodeError as exc:
            exc.index = i
            result.errors.append(exc)
    return result


def _build_characteristics() -> dict[str, Characteristic]:
    chars = [
        Characteristic(
            hrs.HEART_RATE_MEASUREMENT, "heart_rate_measurement", hrs.PROFILE,
            lambda p, t, c: hrs.decode_hrm_batch(p, t), hrs.parse_hrm,
        ),
        Characteristic(
            hrs.BODY_SENSOR_LOCATION, "body_sensor_location", hrs.PROFILE,
            _body_location_batch,
            lambda p: {"body_sensor_location": hrs.parse_body_sensor_location(p)},
        ),
        Characteristic(
            hrs.BATTERY_LEVEL, "battery_level", hrs.PROFILE,
            lambda p, t, c: hrs.decode_battery_batch(p, t),
            lambda p: {"battery_pct": hrs.parse_battery_level(p)},
        ),
        Characteristic(
            itm.STEP_COUNT, "step_count", itm.PROFILE,
            lambda p, t, c: itm.decode_steps_batch(p, t),
            lambda p: {"steps": itm.parse_step_count(p)},
        ),
        Characteristic(
            itm.MOTION_VALUES, "motion_values", itm.PROFILE,
            lambda p, t, c: itm.decode_motion_batch(p, t), itm.parse_motion_values,
        ),
        Characteristic(
            pmd.PMD_CONTROL_POINT, "pmd_control_point", pmd.PROFILE,
            lambda p, t, c: pmd.decode_control_point_batch(p), pmd.parse_control_point_json,
        ),
        Characteristic(
            pmd.PMD_DATA, "pmd_data", pmd.PROFILE,
            pmd.decode_data_batch, pmd.parse_data_frame_json,
        ),
    ]
    for uuid, name in hrs.DEVICE_INFORMATION_STRINGS.items():
        chars.append(Characteristic(uuid, name, "device_information",
                                    _info_batch(uuid), _info_one(uuid)))
    return {c.uuid: c for c in chars}


CHARACTERISTICS: dict[str, Characteristic] = _build_characteristics()
"""Every decodable characteristic by 128-bit lower-case UUID."""

_READ_INFO = tuple(
    SetupStep("read", uuid, optional=True, note=f"Device Information: {name}")
    for uuid, name in hrs.DEVICE_INFORMATION_STRINGS.items()
)
_BATTERY = (
    SetupStep("read", hrs.BATTERY_LEVEL, optional=True, note="battery level now"),
    SetupStep("subscribe", hrs.BATTERY_LEVEL, optional=True, note="battery level changes"),
)
_HR = (
    SetupStep("read", hrs.BODY_SENSOR_LOCATION, optional=True, note="where the sensor sits"),
    SetupStep("subscribe", hrs.HEART_RATE_MEASUREMENT, note="heart rate + RR, about 1 Hz"),
)


def _pmd_acc(rate_hz: int, note_suffix: str = "") -> tuple[SetupStep, ...]:
    """Subscribe to the PMD control point and data, then start ACC at ``rate_hz``, 16 bit, +-8 g."""
    return (
        SetupStep("subscribe", pmd.PMD_CONTROL_POINT, note="PMD control point indications"),
        SetupStep("subscribe", pmd.PMD_DATA, note="PMD data notifications"),
        SetupStep(
            "write", pmd.PMD_CONTROL_POINT, pmd.request_settings(pmd.MeasurementType.ACC),
            response_char=pmd.PMD_CONTROL_POINT, optional=True,
            note="ask which ACC settings the device supports (recorded for the log)",
        ),
        SetupStep(
            "write", pmd.PMD_CONTROL_POINT,
            pmd.request_start(pmd.MeasurementType.ACC, sample_rate_hz=rate_hz,
                              resolution_bits=16, range_g=8),
            response_char=pmd.PMD_CONTROL_POINT,
            note=f"start ACC {rate_hz} Hz, 16 bit, +-8 g{note_suffix}",
        ),
    )

PROFILES: dict[str, Profile] = {
    "polar_pmd": Profile(
        name="polar_pmd",
        title="Polar H10 / H9 (chest strap): Heart Rate Service + PMD accelerometer 50 Hz",
        service_uuids=(pmd.PMD_SERVICE,),
        setup=(
            *_READ_INFO,
            *_BATTERY,
            *_HR,
            *_pmd_acc(50),
        ),
    ),
    "polar_optical": Profile(
        name="polar_optical",
        title="Polar Verity Sense / OH1 (optical): HR + PMD PPI + accelerometer 52 Hz",
        service_uuids=(pmd.PMD_SERVICE,),
        setup=(
            *_READ_INFO,
            *_BATTERY,
            *_HR,
            *_pmd_acc(52, " (Verity Sense default; OH1 streams 50 Hz)"),
            SetupStep(
                "write", pmd.PMD_CONTROL_POINT, pmd.request_start(pmd.MeasurementType.PPI),
                response_char=pmd.PMD_CONTROL_POINT, optional=True,
                note="start PPI (first intervals after ~25 s; HR then updates every 5 s)",
            ),
        ),
    ),
    "infinitime_motion": Profile(
        name="infinitime_motion",
        title="PineTime (InfiniTime): Heart Rate Service + Motion Service",
        service_uuids=(itm.MOTION_SERVICE,),
        setup=(
            *_READ_INFO,
            *_BATTERY,
            *_HR,
            SetupStep("read", itm.STEP_COUNT, note="step counter now"),
            SetupStep("subscribe", itm.STEP_COUNT, note="step counter changes"),
            SetupStep("subscribe", itm.MOTION_VALUES, note="raw x/y/z, up to 10 Hz on change"),
        ),
    ),
    "heart_rate": Profile(
        name="heart_rate",
        title="Any Bluetooth SIG Heart Rate Service device (e.g. Polar H7)",
        service_uuids=(hrs.HEART_RATE_SERVICE,),
        setup=(*_READ_INFO, *_BATTERY, *_HR),
    ),
}
"""Profiles by name, most specific first (the order :func:`profile_for_services` tries)."""


OPTICAL_NAME_PREFIXES = ("Polar Sense", "Polar OH1")
"""Advertised names of Polar's optical sensors (Verity Sense, OH1): they share the PMD
service with the H10 but stream PPI and a different accelerometer rate."""


def profile_for_services(service_uuids: Iterable[str], name: str | None = None) -> str | None:
    """Name of the most specific profile whose identifying service is among ``service_uuids``.

    UUIDs may be 16-bit (``180d``) or 128-bit in any case; unparsable ones are ignored.
    ``name`` (the advertised local name, optional) tells Polar's optical sensors from
    the H10/H9, which expose the same services.
    """
    found = set()
    for u in service_uuids:
        try:
            found.add(normalize_uuid(u))
        except ValueError:
            continue
    for profile in PROFILES.values():
        optical = (name or "").startswith(OPTICAL_NAME_PREFIXES)
        if profile.name == ("polar_pmd" if optical else "polar_optical"):
            continue
        if any(s in found for s in profile.service_uuids):
            return profile.name
    return None


def characteristic(char_uuid: str) -> Characteristic | None:
    """The decoder entry for a characteristic, or ``None`` if unknown (or not a UUID)."""
    entry = CHARACTERISTICS.get(char_uuid)  # given in normal form already (the usual case)
    if entry is not None:
        return entry
    try:
        return CHARACTERISTICS.get(normalize_uuid(char_uuid))
    except ValueError:
        return None


def is_known(char_uuid: str) -> bool:
    """Whether sensord can decode this characteristic."""
    return characteristic(char_uuid) is not None


def _unknown(char_uuid: str, payload: bytes = b"") -> DecodeError:
    return decode_error(
        "no decoder for this characteristic", profile="unknown", characteristic=char_uuid,
        payload=payload,
    )


def decode_batch(
    char_uuid: str,
    payloads: Sequence[bytes],
    recv_wall_ns: npt.ArrayLike,
    *,
    context: DecodeContext | None = None,
) -> DecodeResult:
    """Decode a batch of notifications of one characteristic of one device.

    Parameters
    ----------
    char_uuid
        The characteristic (16-bit or 128-bit UUID).
    payloads
        Payloads in arrival order.
    recv_wall_ns
        Host receive time of each payload, UTC ns (int64), same length.
    context
        What earlier batches of the same device taught (e.g. PMD scale factors from the
        control point; see :attr:`DecodeResult.context`).

    Returns
    -------
    DecodeResult
        Streams, per-payload errors (``.index`` = position in the batch), static info,
        messages and the updated context.

    Raises
    ------
    DecodeError
        If the characteristic has no decoder (nothing of the batch can be decoded).
    """
    entry = characteristic(char_uuid)
    if entry is None:
        raise _unknown(char_uuid)
    recv = np.asarray(recv_wall_ns, dtype=np.int64)
    if recv.shape != (len(payloads),):
        raise ValueError(f"recv_wall_ns has shape {recv.shape}, expected ({len(payloads)},)")
    ctx = DecodeContext() if context is None else context
    result = entry.batch(payloads, recv, ctx)
    merged = DecodeContext()
    merged.update(ctx)
    merged.update(result.context)
    result.context = merged
    return result


def decode_one(char_uuid: str, payload: bytes) -> dict[str, Any]:
    """Decode one payload into JSON-able values (dicts, lists, str, int, float, bool, None).

    Raises
    ------
    DecodeError
        Malformed payload or unknown characteristic;
        :class:`~sensord.errors.ControlPointError` for a control-point failure status.
    """
    entry = characteristic(char_uuid)
    if entry is None:
        raise _unknown(char_uuid, payload)
    out = {"characteristic": entry.name, "profile": entry.profile}
    out.update(entry.one(bytes(payload)))
    return out
