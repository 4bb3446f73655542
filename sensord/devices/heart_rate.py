"""Heart Rate Service (0x180D), Battery Service (0x180F) and Device Information (0x180A).

Pure decoders and encoders for the Bluetooth SIG characteristics a heart-rate strap or
watch exposes. Source for every layout: Bluetooth SIG, *Heart Rate Service 1.0* (HRS_SPEC
v10, 2011) section 3.1 and the GATT Specification Supplement (Heart Rate Measurement,
Body Sensor Location, Battery Level, the Device Information strings).

Heart Rate Measurement (0x2A37) layout, little-endian::

    flags u8 | hr u8 or u16 (flag bit 0) | energy expended u16 kJ (bit 3) | RR u16 * n (bit 4)

Flag bits: 0 = heart rate is uint16, 1 = sensor contact detected, 2 = sensor contact
supported, 3 = energy expended present, 4 = one or more RR intervals present (units of
1/1024 s), 5-7 reserved. RR intervals are kept at full precision as float ``rr_ms``
(``rr_1024 * 1000 / 1024``); Polar's SDK instead truncates to whole ms.

Beat times
----------
A notification carries the RR intervals of the beats since the previous notification, but
no time stamp: it is sent at the device's next reporting tick (about 1 Hz), so the
delay between the last beat and the reception varies between 0 and about 1 s. Anchoring
each notification's last beat to its own receive time would therefore add up to 1 s of
jitter. Instead :func:`reconstruct_beat_times` chains all intervals of a batch into a
cumulative sum ``c`` (the device's beat clock) and, per notification ``k`` with receive
time ``r_k`` and last-beat cumulative time ``c_k``, computes the delay ``d_k = r_k - c_k``.
The true delay is ``d_k`` minus a non-negative latency, so the offset between beat clock
and host clock is the *lower envelope* of ``d``: we take the minimum of ``d`` over the
notification and the next ``window - 1`` ones (forward-looking, so an upward step of
``d`` after lost notifications -- beats missing from the chain -- is followed at once,
and slow drift between device and host clocks is tracked); near the end of a batch the
window is shifted back to stay full. Windows never cross a reception gap longer than
``gap_ns`` (4 s: a disconnect, across which beats were lost; BLE acknowledges
notifications, so shorter stalls only delay them). A beat's time is then
``c + offset``, which never lies after its notification's reception. Windows also end where
``d`` falls by more than ``max_advance_ns`` (intervals adding up to more time than passed
on the host: corrupt RR values). Accuracy on simulated 1-Hz straps with 5-60 ms BLE
latency (tests/test_devices_heart_rate.py): median error about 30 ms, maximum about
0.1 s; anchoring each notification's last beat to its receive time is off by about
0.5 s (median). Notifications without
RR intervals contribute nothing and do not cut the chain. Times are finally made strictly
increasing (by at least 1 ns).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.devices._common import DecodeResult, Ragged, decode_error, group_index, median
from sensord.errors import DecodeError
from sensord.model import (
    F64,
    I64,
    BatteryStream,
    BeatStream,
    ContactStream,
    EnergyStream,
    HeartRateStream,
    sig_uuid,
)

PROFILE = "heart_rate"

HEART_RATE_SERVICE = sig_uuid(0x180D)
BATTERY_SERVICE = sig_uuid(0x180F)
DEVICE_INFORMATION_SERVICE = sig_uuid(0x180A)

HEART_RATE_MEASUREMENT = sig_uuid(0x2A37)
BODY_SENSOR_LOCATION = sig_uuid(0x2A38)
BATTERY_LEVEL = sig_uuid(0x2A19)

DEVICE_INFORMATION_STRINGS: dict[str, str] = {
    sig_uuid(0x2A29): "manufacturer_name",
    sig_uuid(0x2A24): "model_number",
    sig_uuid(0x2A25): "serial_number",
    sig_uuid(0x2A26): "firmware_revision",
    sig_uuid(0x2A27): "hardware_revision",
    sig_uuid(0x2A28): "software_revision",
}

BODY_SENSOR_LOCATIONS = ("other", "chest", "wrist", "finger", "hand", "ear_lobe", "foot")

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY = 0x08
FLAG_RR = 0x10

RR_UNIT_MS = 1000.0 / 1024.0
"""One RR tick (1/1024 s) in milliseconds."""


def _err(char: str, reason: str, payload: bytes, index: int | None = None) -> DecodeError:
    return decode_error(reason, profile=PROFILE, characteristic=char, payload=payload, index=index)


# --------------------------------------------------------------------------------------------
# Heart Rate Measurement: one payload at a time (plain Python)
# --------------------------------------------------------------------------------------------


def parse_hrm(payload: bytes) -> dict[str, Any]:
    """Decode one Heart Rate Measurement payload into plain Python values.

    Returns a dict with ``hr_bpm`` (int), ``contact_supported``, ``contact`` (bool, or
    ``None`` when not supported), ``energy_kj`` (int or ``None``), ``rr_1024`` (list of
    raw ticks) and ``rr_ms`` (list of float ms). Raises :class:`DecodeError` if the
    payload is shorter than its flags announce or its RR field has an odd length.
    """
    char = "heart_rate_measurement"
    n = len(payload)
    if n < 2:
        raise _err(char, f"payload of {n} bytes is shorter than the minimum of 2", payload)
    flags = payload[0]
    pos = 1
    if flags & FLAG_HR_UINT16:
        if n < 3:
            raise _err(char, "flags announce a uint16 heart rate but only 1 byte follows", payload)
        hr = payload[1] | (payload[2] << 8)
        pos = 3
    else:
        hr = payload[1]
        pos = 2
    energy: int | None = None
    if flags & FLAG_ENERGY:
        if n < pos + 2:
            raise _err(char, f"flags announce energy expended at byte {pos} but it is missing",
                       payload)
        energy = payload[pos] | (payload[pos + 1] << 8)
        pos += 2
    rr: list[int] = []
    if flags & FLAG_RR:
        rest = n - pos
        if rest < 2 or rest % 2:
            raise _err(char, f"RR field of {rest} bytes at byte {pos} is not a whole number "
                             "(>= 1) of 2-byte intervals", payload)
        rr = [payload[i] | (payload[i + 1] << 8) for i in range(pos, n, 2)]
    supported = bool(flags & FLAG_CONTACT_SUPPORTED)
    return {
        "hr_bpm": hr,
        "contact_supported": supported,
        "contact": bool(flags & FLAG_CONTACT_DETECTED) if supported else None,
        "energy_kj": energy,
        "rr_1024": rr,
        "rr_ms": [r * RR_UNIT_MS for r in rr],
    }


# --------------------------------------------------------------------------------------------
# Heart Rate Measurement: whole batch (numpy)
# --------------------------------------------------------------------------------------------


def decode_hrm_batch(payloads: Sequence[bytes], recv_wall_ns: I64) -> DecodeResult:
    """Decode a batch of Heart Rate Measurement notifications into columnar streams.

    Parameters
    ----------
    payloads
        Notification payloads in arrival order.
    recv_wall_ns
        Host receive time of each payload, UTC ns, same length.

    Returns
    -------
    DecodeResult
        ``hr`` (at receive time), ``beats`` (RR intervals with reconstructed beat times,
        see the module docstring), ``contact`` (only where supported), ``energy``
        (only where present); one error per malformed payload.
    """
    recv = np.asarray(recv_wall_ns, dtype=np.int64)
    if recv.shape != (len(payloads),):
        raise ValueError(f"recv_wall_ns has shape {recv.shape}, expected ({len(payloads)},)")
    rg = Ragged.from_payloads(payloads)
    buf, start, n = rg.buf, rg.start, rg.length
    # bytes at fixed offsets of every row (padding makes short rows safe to read; they
    # are rejected below before any value is used)
    flags = buf[start]
    wide = flags & FLAG_HR_UINT16
    has_energy = (flags & FLAG_ENERGY) >> 3
    has_rr = (flags & FLAG_RR) != 0
    rr_pos = 2 + wide + 2 * has_energy  # first RR byte, relative to the row start
    rr_bytes = n - rr_pos
    ok = (rr_bytes >= 0) & (~has_rr | ((rr_bytes >= 2) & (rr_bytes % 2 == 0)))

    result = DecodeResult()
    sel: slice | npt.NDArray[np.intp] = slice(None)
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            try:
                parse_hrm(payloads[i])
            except DecodeError as exc:
                result.errors.append(
                    _err("heart_rate_measurement", exc.reason, payloads[i], i))
            else:  # pragma: no cover - the vectorised check and parse_hrm must agree
                raise AssertionError(f"batch and single decoders disagree on payload #{i}")
        sel = np.flatnonzero(ok)
        start, flags, wide, has_energy, has_rr = (
            start[sel], flags[sel], wide[sel], has_energy[sel], has_rr[sel])
        rr_pos, rr_bytes = rr_pos[sel], rr_bytes[sel]
    t = recv[sel]
    hr = buf[start + 1] + 256.0 * (buf[start + 2] * wide)
    result.streams["hr"] = HeartRateStream(t_ns=t, hr_bpm=hr)

    sup = (flags & FLAG_CONTACT_SUPPORTED) != 0
    if sup.any():
        result.streams["contact"] = ContactStream(
            t_ns=t[sup], contact=(flags[sup] & FLAG_CONTACT_DETECTED) != 0
        )
    en = has_energy != 0
    if en.any():
        p = start[en] + 2 + wide[en]
        e = buf[p] + 256.0 * buf[p + 1]
        result.streams["energy"] = EnergyStream(t_ns=t[en], energy_kj=e)

    counts = np.where(has_rr, rr_bytes >> 1, 0)
    group, rank = group_index(counts)
    p = start[group] + rr_pos[group] + 2 * rank
    rr_ms = (buf[p] + 256.0 * buf[p + 1]) * RR_UNIT_MS
    beat_t = reconstruct_beat_times(t, counts, rr_ms)
    result.streams["beats"] = BeatStream(t_ns=beat_t, rr_ms=rr_ms)
    result.n_decoded = int(t.size)
    return result


def reconstruct_beat_times(
    recv_ns: I64,
    rr_counts: I64,
    rr_ms: F64,
    *,
    window: int = 120,
    max_advance_ns: int = 3_000_000_000,
    gap_ns: int = 4_000_000_000,
) -> I64:
    """Time of the beat ending each RR interval, from notification receive times.

    Parameters
    ----------
    recv_ns
        Receive time of each notification (UTC ns), in arrival order.
    rr_counts
        Number of RR intervals each notification carried (0 allowed).
    rr_ms
        All intervals, concatenated in order, ms.
    window
        Number of notifications (with intervals) over which the lower envelope of the
        delay is taken.
    max_advance_ns
        Windows end where the intervals add up to more than this beyond the host time
        that passed (corrupt intervals).
    gap_ns
        Windows end at reception gaps longer than this (and than 1.5 median intervals):
        a disconnect, across which beats were lost. BLE acknowledges notifications, so
        shorter stalls delay them without losing any.

    Returns
    -------
    numpy.ndarray
        int64 UTC ns per interval, strictly increasing. See the module docstring for
        the method.
    """
    total = int(rr_counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    with_rr = np.flatnonzero(rr_counts > 0)
    m = with_rr.size
    last = np.cumsum(rr_counts)[with_rr] - 1  # index of each notification's last interval
    cum_ns = np.cumsum(rr_ms) * 1e6
    base = int(recv_ns[with_rr[0]])
    recv = recv_ns[with_rr]
    delay = (recv - base).astype(np.float64) - cum_ns[last]
    # runs: cut where the intervals outrun host time by more than any latency could
    # (corrupt intervals), and at disconnects, across which beats were lost
    gaps = recv[1:] - recv[:-1]  # (np.diff, without its call overhead)
    typical = median(gaps) if gaps.size else 0.0
    cut = ((delay[1:] - delay[:-1]) < -max_advance_ns) | (gaps > max(1.5 * typical, gap_ns))
    w = max(1, min(window, m))
    pos = np.arange(m)
    if not cut.any():  # one run (the usual case)
        fwd = forward_min(delay, w)
        start = np.minimum(pos, m - w)
    else:
        # minimum over a window of ``window`` notifications inside each run: forward from
        # each notification, shifted back near the run's end so that it stays full;
        # lifting later runs by a large constant keeps them out of earlier windows
        run = np.concatenate(([0], np.cumsum(cut)))
        span = float(np.ptp(delay)) + 1e12
        keyed = delay + run * span
        fwd = forward_min(keyed, w) - run * span
        first = np.flatnonzero(np.concatenate(([True], cut)))
        last = np.concatenate((first[1:] - 1, [m - 1]))
        start = np.maximum(first[run], np.minimum(pos, last[run] - w + 1))
    offset = np.minimum(fwd[start], delay)
    owner = np.repeat(np.arange(m), rr_counts[with_rr])
    t = np.rint(cum_ns + offset[owner]).astype(np.int64) + base
    # strictly increasing by at least 1 ns
    steps = np.arange(total, dtype=np.int64)
    return np.maximum.accumulate(t - steps) + steps


def forward_min(x: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """``out[i] = min(x[i : i + window])``, the last value repeated past the end.

    Exact (a minimum does not round) in ``log2(window)`` vectorised steps, each the
    minimum of two shifted copies: the running window doubles until it spans ``window``.
    Numpy only, so decoding needs no scipy (the recording process stays small).
    """
    n = x.size
    if n == 0 or window <= 1:
        return x.copy()
    out = np.concatenate((x, np.full(window - 1, x[-1])))
    span = 1
    while span < window:
        step = min(span, window - span)
        out[:-step] = np.minimum(out[:-step], out[step:])
        span += step
    return out[:n]

# --------------------------------------------------------------------------------------------
# Body Sensor Location, Battery Level, Device Information
# --------------------------------------------------------------------------------------------


def parse_body_sensor_location(payload: bytes) -> str:
    """Body Sensor Location (0x2A38): one byte, 0 other ... 6 foot."""
    char = "body_sensor_location"
    if len(payload) != 1:
        raise _err(char, f"expected 1 byte, got {len(payload)}", payload)
    if payload[0] >= len(BODY_SENSOR_LOCATIONS):
        raise _err(char, f"location code {payload[0]} is reserved (valid 0-6)", payload)
    return BODY_SENSOR_LOCATIONS[payload[0]]


def parse_battery_level(payload: bytes) -> int:
    """Battery Level (0x2A19): one byte, percent 0-100."""
    char = "battery_level"
    if len(payload) != 1:
        raise _err(char, f"expected 1 byte, got {len(payload)}", payload)
    if payload[0] > 100:
        raise _err(char, f"battery level {payload[0]} % is above 100", payload)
    return payload[0]


def decode_battery_batch(payloads: Sequence[bytes], recv_wall_ns: I64) -> DecodeResult:
    """Battery Level notifications/reads -> ``battery`` stream (percent at receive time)."""
    recv = np.asarray(recv_wall_ns, dtype=np.int64)
    result = DecodeResult()
    n = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
    first = np.frombuffer(b"".join(p[:1] for p in payloads), dtype=np.uint8)
    value = np.zeros(len(payloads), dtype=np.int64)
    value[n >= 1] = first
    ok = (n == 1) & (value <= 100)
    for i in np.flatnonzero(~ok).tolist():
        try:
            parse_battery_level(payloads[i])
        except DecodeError as exc:
            result.errors.append(_err("battery_level", exc.reason, payloads[i], int(i)))
    result.streams["battery"] = BatteryStream(
        t_ns=recv[ok], battery_pct=value[ok].astype(np.float64)
    )
    result.n_decoded = int(ok.sum())
    return result


def parse_info_string(char_uuid: str, payload: bytes) -> str:
    """A Device Information string (UTF-8; trailing NUL padding, which some firmware sends,
    is removed)."""
    name = DEVICE_INFORMATION_STRINGS.get(char_uuid, char_uuid)
    try:
        return payload.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _err(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})", payload) from None


# --------------------------------------------------------------------------------------------
# Encoders (used by the simulator and the round-trip tests)
# --------------------------------------------------------------------------------------------


def encode_hrm(
    hr_bpm: int,
    rr_1024: Sequence[int] = (),
    *,
    contact: bool | None = None,
    energy_kj: int | None = None,
    uint16: bool | None = None,
) -> bytes:
    """Encode a Heart Rate Measurement.

    ``contact`` ``None`` means contact detection not supported; ``uint16`` ``None`` picks
    the uint16 format only when ``hr_bpm`` > 255. RR intervals are raw 1/1024-s ticks.
    """
    if not 0 <= hr_bpm <= 0xFFFF:
        raise ValueError(f"hr_bpm {hr_bpm} does not fit in uint16")
    wide = hr_bpm > 0xFF if uint16 is None else uint16
    if not wide and hr_bpm > 0xFF:
        raise ValueError(f"hr_bpm {hr_bpm} does not fit in uint8")
    flags = FLAG_HR_UINT16 if wide else 0
    if contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if contact else 0)
    out = bytearray()
    out += struct.pack("<H", hr_bpm) if wide else bytes([hr_bpm])
    if energy_kj is not None:
        flags |= FLAG_ENERGY
        out += struct.pack("<H", energy_kj)
    if rr_1024:
        flags |= FLAG_RR
        out += struct.pack(f"<{len(rr_1024)}H", *rr_1024)
    return bytes([flags]) + bytes(out)


def encode_battery_level(pct: int) -> bytes:
    """Encode a Battery Level (percent 0-100)."""
    if not 0 <= pct <= 100:
        raise ValueError(f"battery level {pct} % is outside 0-100")
    return bytes([pct])


def encode_body_sensor_location(location: str) -> bytes:
    """Encode a Body Sensor Location by name (``chest``, ``wrist``, ...)."""
    return bytes([BODY_SENSOR_LOCATIONS.index(location)])


def rr_ms_to_1024(rr_ms: F64) -> I64:
    """Round RR intervals in ms to the nearest 1/1024-s tick (clipped to uint16)."""
    return np.clip(np.rint(np.asarray(rr_ms) * 1.024), 0, 0xFFFF).astype(np.int64)
