"""Polar Measurement Data (PMD) service: control point and data frames.

Polar H10, Verity Sense and OH1 stream raw ECG, accelerometer and peak-to-peak intervals
through a vendor service. Every layout here is taken from Polar's open BLE SDK
(polarofficial/polar-ble-sdk, Android sources ``BlePMDClient.kt``, ``PmdControlPoint*.kt``,
``PmdSetting.kt``, ``PmdDataFrame.kt``, ``model/AccData.kt``, ``EcgData.kt``,
``PpiData.kt``, ``PmdTimeStampUtils.kt``; read at commit 8fb5311c) and its unit tests.

Control point (``...5C81``, write + indicate)
    Request: ``op | measurement type | settings``; op 1 = get settings, 2 = start,
    3 = stop. Settings are ``type u8 | count u8 | value * count`` with value sizes
    sample rate 2, resolution 2, range 2, range milli-unit 4, channels 1, factor 4
    (IEEE-754 float bits), security 16 bytes, little-endian.
    Response: ``0xF0 | op | measurement type | status | more | parameters``; status 0 is
    success, anything else is a failure (:data:`STATUS_NAMES`). A frame starting
    with ``0x01`` instead of ``0xF0`` is the device telling that it stopped the listed
    measurements on its own.

Data (``...5C82``, notify)
    ``measurement type u8 | sensor time u64 LE (ns) | frame type u8 | content``; frame
    type bit 7 set means delta-compressed content, bits 0-6 the frame type. The sensor
    time is that of the *last* sample of the frame.

Sample times
------------
Within one run of frames of the same measurement, the samples of a frame are spread
evenly between the previous frame's time stamp and this one's (as the SDK does, though
it keys the previous frame by measurement *and* frame type):
``dt = (ts_i - ts_{i-1}) / n_i``, sample ``k`` at ``ts_{i-1} + (k + 1) dt``.
Where there is no usable previous frame (first frame, or a gap: the spacing is more than
1.5 times the run's median spacing, or the clock went backwards) the median spacing of
the batch is used instead (or the requested sample rate if a run has a single frame).

Sensor time is mapped to host UTC by a constant offset per continuous stretch of sensor
clock: ``offset = min_i(recv_wall_ns_i - ts_i)``, the lower envelope of receive minus
sensor time -- the frame that arrived with the least transmission and buffering delay.
A stretch ends where the sensor clock runs backwards or disagrees with the host clock by
more than :data:`CLOCK_BREAK_NS` between two frames (device reset or reconnect). Without
receive times, sensor time is read as ns since 2000-01-01 UTC (Polar's epoch,
:data:`POLAR_EPOCH_UNIX_NS`). Offsets are computed per batch: decoding a night in
several batches may shift the mapping between batches by the difference of their
envelopes (typically a few ms).

PPI frames carry no usable sensor time on most devices (the time stamp is 0); PPI beat
times are reconstructed from receive times like RR intervals
(:func:`sensord.devices.heart_rate.reconstruct_beat_times`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.devices._common import (
    DecodeContext,
    DecodeResult,
    Ragged,
    decode_error,
    distinct,
    group_index,
    median,
)
from sensord.devices.heart_rate import reconstruct_beat_times
from sensord.errors import ControlPointError, DecodeError
from sensord.model import I64, AccStream, EcgStream, PpiStream

PROFILE = "polar_pmd"

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_POINT = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

POLAR_EPOCH_UNIX_NS = 946_684_800 * 1_000_000_000
"""2000-01-01T00:00:00Z in Unix ns: the origin of Polar sensor time stamps."""

CLOCK_BREAK_NS = 5_000_000_000
"""Sensor and host clocks disagreeing by more than this between two frames start a new
stretch of sensor clock (see the module docstring)."""

HEADER_LEN = 10
CONTROL_POINT_RESPONSE = 0xF0
MEASUREMENT_STOPPED = 0x01


class MeasurementType(IntEnum):
    """PMD measurement types (``PmdMeasurementType.kt``)."""

    ECG = 0
    PPG = 1
    ACC = 2
    PPI = 3
    GYRO = 5
    MAGNETOMETER = 6
    SKIN_TEMP = 7
    SDK_MODE = 9
    LOCATION = 10
    PRESSURE = 11
    TEMPERATURE = 12
    OFFLINE_RECORDING = 13
    OFFLINE_HR = 14


class Op(IntEnum):
    """Control-point op codes, client to device."""

    GET_MEASUREMENT_SETTINGS = 1
    REQUEST_MEASUREMENT_START = 2
    STOP_MEASUREMENT = 3
    GET_SDK_MODE_MEASUREMENT_SETTINGS = 4
    GET_MEASUREMENT_STATUS = 5
    GET_SDK_MODE_STATUS = 6
    GET_OFFLINE_RECORDING_TRIGGER_STATUS = 7
    SET_OFFLINE_RECORDING_TRIGGER_MODE = 8
    SET_OFFLINE_RECORDING_TRIGGER_SETTINGS = 9


class SettingType(IntEnum):
    """Setting types in control-point requests and responses."""

    SAMPLE_RATE = 0
    RESOLUTION = 1
    RANGE = 2
    RANGE_MILLIUNIT = 3
    CHANNELS = 4
    FACTOR = 5
    SECURITY = 6


SETTING_SIZE = {
    SettingType.SAMPLE_RATE: 2,
    SettingType.RESOLUTION: 2,
    SettingType.RANGE: 2,
    SettingType.RANGE_MILLIUNIT: 4,
    SettingType.CHANNELS: 1,
    SettingType.FACTOR: 4,
    SettingType.SECURITY: 16,
}

STATUS_NAMES = (
    "success",
    "invalid op code",
    "invalid measurement type",
    "not supported",
    "invalid length",
    "invalid parameter",
    "already in state",
    "invalid resolution",
    "invalid sample rate",
    "invalid range",
    "invalid MTU",
    "invalid number of channels",
    "invalid state",
    "device in charger",
    "disk full",
)
"""Control-point status codes 0-14 (``PmdControlPointResponse.kt``)."""

DEFAULT_SAMPLE_RATE_HZ = {MeasurementType.ECG: 130.0, MeasurementType.ACC: 50.0}
"""Used for frame spacing only when a batch has a single frame and no requested rate."""

ACC_RAW_SAMPLE_BYTES = {0: 1, 1: 2, 2: 3}
"""ACC raw frame types 0-2: bytes per axis (signed, milli-g)."""


def _err(char: str, reason: str, payload: bytes, index: int | None = None) -> DecodeError:
    return decode_error(reason, profile=PROFILE, characteristic=char, payload=payload, index=index)


def _type_name(mtype: int) -> str:
    try:
        return MeasurementType(mtype).name.lower()
    except ValueError:
        return f"type {mtype}"


# --------------------------------------------------------------------------------------------
# Control point: requests
# --------------------------------------------------------------------------------------------


def encode_settings(settings: Mapping[SettingType | int, Sequence[int | float]]) -> bytes:
    """Serialise settings as ``type | count | values`` (factor values as float bits)."""
    out = bytearray()
    for key, values in settings.items():
        stype = SettingType(key)
        size = SETTING_SIZE[stype]
        out += bytes([stype, len(values)])
        for v in values:
            if stype is SettingType.FACTOR:
                out += struct.pack("<f", float(v))
            else:
                iv = int(v)
                if not -(1 << (8 * size - 1)) <= iv < (1 << (8 * size)):
                    raise ValueError(f"{stype.name} value {iv} does not fit in {size} bytes")
                out += (iv & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(out)


def request_settings(mtype: MeasurementType | int) -> bytes:
    """Control-point request: which settings does measurement ``mtype`` support?"""
    return bytes([Op.GET_MEASUREMENT_SETTINGS, int(mtype)])


def request_start(
    mtype: MeasurementType | int,
    *,
    sample_rate_hz: int | None = None,
    resolution_bits: int | None = None,
    range_g: int | None = None,
    channels: int | None = None,
) -> bytes:
    """Control-point request: start streaming ``mtype`` with the given settings.

    E.g. ``request_start(MeasurementType.ACC, sample_rate_hz=50, resolution_bits=16,
    range_g=8)``; H10 ECG takes ``sample_rate_hz=130, resolution_bits=14``. PPI takes
    no settings.
    """
    settings: dict[SettingType | int, Sequence[int | float]] = {}
    if sample_rate_hz is not None:
        settings[SettingType.SAMPLE_RATE] = [sample_rate_hz]
    if resolution_bits is not None:
        settings[SettingType.RESOLUTION] = [resolution_bits]
    if range_g is not None:
        settings[SettingType.RANGE] = [range_g]
    if channels is not None:
        settings[SettingType.CHANNELS] = [channels]
    return bytes([Op.REQUEST_MEASUREMENT_START, int(mtype)]) + encode_settings(settings)


def request_stop(mtype: MeasurementType | int) -> bytes:
    """Control-point request: stop streaming ``mtype``."""
    return bytes([Op.STOP_MEASUREMENT, int(mtype)])


def parse_request(payload: bytes) -> dict[str, Any]:
    """Decode a control-point *request* (as written by sensord, recorded in the log)."""
    char = "pmd_control_point"
    if len(payload) < 2:
        raise _err(char, f"request of {len(payload)} bytes is shorter than op + type", payload)
    try:
        op = Op(payload[0])
    except ValueError:
        raise _err(char, f"unknown request op code {payload[0]}", payload) from None
    out: dict[str, Any] = {"request": op.name.lower(), "measurement_type": _type_name(payload[1])}
    if op is Op.REQUEST_MEASUREMENT_START:
        out["settings"] = parse_settings(payload[2:], payload)
    return out


# --------------------------------------------------------------------------------------------
# Control point: responses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlPointResponse:
    """A decoded control-point response (``0xF0 ...``)."""

    op: int
    measurement_type: int
    status: int
    more: bool
    parameters: bytes

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status] if self.status < len(STATUS_NAMES) else "unknown status"


def parse_settings(data: bytes, payload: bytes | None = None) -> dict[str, list[int | float]]:
    """Parse ``type | count | values`` settings into ``{name: [values]}``.

    Integer values are read signed from their field size (as the SDK does); ``factor``
    values are IEEE-754 floats; ``security`` values are returned as ints of 16 bytes.
    A buffer of one byte or less holds no settings (the SDK's rule).
    """
    char = "pmd_control_point"
    whole = data if payload is None else payload
    out: dict[str, list[int | float]] = {}
    if len(data) <= 1:
        return out
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise _err(char, f"setting header truncated at parameter byte {pos}", whole)
        try:
            stype = SettingType(data[pos])
        except ValueError:
            raise _err(char, f"unknown setting type {data[pos]} at parameter byte {pos}",
                       whole) from None
        count = data[pos + 1]
        size = SETTING_SIZE[stype]
        pos += 2
        if pos + count * size > len(data):
            raise _err(char, f"{stype.name} announces {count} values of {size} bytes but "
                             f"only {len(data) - pos} bytes follow", whole)
        values: list[int | float] = []
        for _ in range(count):
            raw = data[pos:pos + size]
            if stype is SettingType.FACTOR:
                values.append(struct.unpack("<f", raw)[0])
            else:
                values.append(int.from_bytes(raw, "little", signed=True))
            pos += size
        out[stype.name.lower()] = values
    return out


def parse_control_point(payload: bytes) -> ControlPointResponse | list[int]:
    """Decode a control-point indication.

    Returns a :class:`ControlPointResponse` for a response (``0xF0``), or the list of
    measurement types the device stopped on its own for a stop notice (``0x01``).
    Failure statuses are *returned* (``.ok`` false); :func:`check_response` raises.
    """
    char = "pmd_control_point"
    if not payload:
        raise _err(char, "empty indication", payload)
    if payload[0] == MEASUREMENT_STOPPED:
        return [b & 0x3F for b in payload[1:]]
    if payload[0] != CONTROL_POINT_RESPONSE:
        raise _err(char, f"first byte 0x{payload[0]:02x} is neither a response (0xf0) nor a "
                         "stop notice (0x01)", payload)
    if len(payload) < 4:
        raise _err(char, f"response of {len(payload)} bytes is shorter than the 4-byte header",
                   payload)
    status = payload[3]
    ok = status == 0
    more = ok and len(payload) > 4 and payload[4] != 0
    params = payload[5:] if ok else b""
    return ControlPointResponse(payload[1], payload[2], status, more, bytes(params))


def check_response(resp: ControlPointResponse, payload: bytes) -> None:
    """Raise :class:`ControlPointError` if ``resp`` reports a failure."""
    if not resp.ok:
        try:
            op = Op(resp.op).name.lower()
        except ValueError:
            op = f"op {resp.op}"
        raise ControlPointError(
            f"{op} for {_type_name(resp.measurement_type)} failed: status {resp.status} "
            f"({resp.status_name})",
            status=resp.status, profile=PROFILE, characteristic="pmd_control_point",
            payload=payload,
        )


def parse_control_point_json(payload: bytes) -> dict[str, Any]:
    """JSON-able view of a control-point indication or request; raises on failure status.

    Payloads whose first byte is a request op code (2-9, as sensord writes them) are shown
    as requests; ``0x01`` is ambiguous (request "get settings" vs. device stop notice)
    and is read as the device's stop notice, as on the indication path.
    """
    if payload and 2 <= payload[0] <= 9:
        return parse_request(payload)
    parsed = parse_control_point(payload)
    if isinstance(parsed, list):
        return {"stopped_by_device": [_type_name(t) for t in parsed]}
    check_response(parsed, payload)
    try:
        op = Op(parsed.op).name.lower()
    except ValueError:
        op = f"op {parsed.op}"
    out: dict[str, Any] = {
        "response_to": op,
        "measurement_type": _type_name(parsed.measurement_type),
        "status": parsed.status_name,
        "more": parsed.more,
        "parameters_hex": parsed.parameters.hex(),
    }
    if parsed.op in (Op.GET_MEASUREMENT_SETTINGS, Op.REQUEST_MEASUREMENT_START,
                     Op.GET_SDK_MODE_MEASUREMENT_SETTINGS):
        # a valid response whose parameters are not settings stays a valid response
        try:
            out["settings"] = parse_settings(parsed.parameters, payload)
        except DecodeError as exc:
            out["settings_error"] = exc.reason
    return out


def decode_control_point_batch(payloads: Sequence[bytes]) -> DecodeResult:
    """Control-point indications -> ``messages``, errors (incl. failure statuses) and the
    context for decoding data (scale factor per measurement type from start responses)."""
    result = DecodeResult()
    for i, p in enumerate(payloads):
        try:
            msg = parse_control_point_json(p)
        except DecodeError as exc:
            exc.index = i
            result.errors.append(exc)
            continue
        msg["index"] = i
        result.messages.append(msg)
        result.n_decoded += 1
        settings = msg.get("settings", {})
        factor = settings.get("factor")
        if msg.get("response_to") == "request_measurement_start" and factor:
            result.context.pmd_factor[p[2] & 0x3F] = float(factor[0])
        rate = settings.get("sample_rate")
        if msg.get("request") == "request_measurement_start" and rate and rate[0] > 0:
            result.context.pmd_sample_rate_hz[p[1] & 0x3F] = float(rate[0])
    return result


def encode_control_point_response(
    op: Op | int,
    mtype: MeasurementType | int,
    status: int = 0,
    *,
    more: bool = False,
    parameters: bytes = b"",
) -> bytes:
    """Encode a control-point response as a device sends it."""
    head = bytes([CONTROL_POINT_RESPONSE, int(op), int(mtype), status])
    if status != 0:
        return head
    return head + bytes([1 if more else 0]) + parameters


# --------------------------------------------------------------------------------------------
# Data frames: header
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 10-byte header of a PMD data frame."""

    measurement_type: int
    sensor_ns: int
    frame_type: int
    compressed: bool


def parse_header(payload: bytes) -> FrameHeader:
    """Parse a data frame header (measurement type masked to bits 0-5, as the SDK does)."""
    if len(payload) < HEADER_LEN:
        raise _err("pmd_data", f"frame of {len(payload)} bytes is shorter than the "
                               f"{HEADER_LEN}-byte header", payload)
    return FrameHeader(
        measurement_type=payload[0] & 0x3F,
        sensor_ns=int.from_bytes(payload[1:9], "little"),
        frame_type=payload[9] & 0x7F,
        compressed=bool(payload[9] & 0x80),
    )


def encode_data_frame(
    mtype: MeasurementType | int, sensor_ns: int, frame_type: int, content: bytes,
    *, compressed: bool = False,
) -> bytes:
    """Assemble a data frame from header fields and content."""
    return (bytes([int(mtype)]) + struct.pack("<Q", sensor_ns)
            + bytes([frame_type | (0x80 if compressed else 0)]) + content)


# --------------------------------------------------------------------------------------------
# Delta compression (plain Python reference and vectorised)
# --------------------------------------------------------------------------------------------


def _wrap32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def parse_delta_frame(
    content: bytes, channels: int, resolution: int, *, signed: bool = True,
    payload: bytes | None = None,
) -> list[list[int]]:
    """Decode delta-compressed content one sample at a time (plain Python).

    Layout: a reference sample of ``channels`` values of ``ceil(resolution / 8)`` bytes,
    then blocks ``width u8 | count u8 | count * channels deltas of width bits``, packed
    least-significant bit first, two's complement. Each sample is the previous one plus
    its deltas; sums wrap at 32 bits as in the SDK. A block of width 0 repeats the
    previous sample ``count`` times (the SDK would drop such samples).
    """
    char = "pmd_data"
    whole = content if payload is None else payload
    ref_bytes = math.ceil(resolution / 8)
    if len(content) < channels * ref_bytes:
        raise _err(char, f"delta frame of {len(content)} content bytes is shorter than its "
                         f"{channels * ref_bytes}-byte reference sample", whole)
    ref = []
    for c in range(channels):
        v = int.from_bytes(content[c * ref_bytes:(c + 1) * ref_bytes], "little", signed=False)
        if signed and v & (1 << (resolution - 1)):
            v -= 1 << resolution
        ref.append(_wrap32(v))
    samples = [ref]
    pos = channels * ref_bytes
    while pos < len(content):
        if pos + 2 > len(content):
            raise _err(char, f"delta block header truncated at content byte {pos}", whole)
        width, count = content[pos], content[pos + 1]
        if width > 32:
            raise _err(char, f"delta width {width} bits at content byte {pos} exceeds 32", whole)
        nbytes = (width * count * channels + 7) // 8
        pos += 2
        if pos + nbytes > len(content):
            raise _err(char, f"delta block of {count} samples x {width} bits needs {nbytes} "
                             f"bytes, only {len(content) - pos} left", whole)
        bits = int.from_bytes(content[pos:pos + nbytes], "little")
        mask = (1 << width) - 1
        k = 0
        for _ in range(count):
            prev = samples[-1]
            nxt = []
            for c in range(channels):
                d = (bits >> (k * width)) & mask
                if width and d & (1 << (width - 1)):
                    d -= 1 << width
                nxt.append(_wrap32(prev[c] + d))
                k += 1
            samples.append(nxt)
        pos += nbytes
    return samples


def encode_delta_frame(samples: npt.ArrayLike, resolution: int = 16,
                       *, block_samples: int = 255) -> bytes:
    """Encode integer samples ``(n, channels)`` as delta-compressed content.

    The first sample is the reference; the rest go in blocks of at most
    ``block_samples`` samples, each with the smallest width that holds its deltas.
    """
    arr = np.asarray(samples, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError("samples must have shape (n >= 1, channels)")
    ref_bytes = math.ceil(resolution / 8)
    lo, hi = -(1 << (resolution - 1)), (1 << (resolution - 1))
    if arr.min() < lo or arr.max() >= hi:
        raise ValueError(f"samples do not fit in {resolution} signed bits")
    out = bytearray()
    for v in arr[0]:
        out += (int(v) & ((1 << (8 * ref_bytes)) - 1)).to_bytes(ref_bytes, "little")
    deltas = np.diff(arr, axis=0)
    for start in range(0, deltas.shape[0], block_samples):
        block = deltas[start:start + block_samples]
        lo_d, hi_d = int(block.min(initial=0)), int(block.max(initial=0))
        width = 0
        if lo_d or hi_d:
            width = 1
            while not -(1 << (width - 1)) <= lo_d <= hi_d < (1 << (width - 1)):
                width += 1
        bits = 0
        for k, d in enumerate(block.ravel()):
            bits |= (int(d) & ((1 << width) - 1)) << (k * width)
        nbytes = (width * block.size + 7) // 8
        out += bytes([width, block.shape[0]]) + bits.to_bytes(nbytes, "little")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _DeltaBatch:
    ok: npt.NDArray[np.bool_]  # per frame
    reason: list[str | None]  # per frame
    counts: I64  # samples per frame (0 for bad frames)
    values: npt.NDArray[np.int32]  # (sum counts, channels), frames in input order


_MASK = np.array([(1 << w) - 1 for w in range(33)], dtype=np.uint64)
_HALF = np.array([(1 << (w - 1)) if w else 0 for w in range(33)], dtype=np.int64)


def _decode_delta_batch(
    rg: Ragged, content_start: I64, content_end: I64, channels: int, resolution: int
) -> _DeltaBatch:
    """Vectorised delta decoding of many frames (Python loops only over block number).

    Same result as :func:`parse_delta_frame` per frame; int32 arithmetic wraps exactly
    like the SDK's ``Int`` sums.
    """
    nf = content_start.size
    ref_bytes = math.ceil(resolution / 8)
    reason: list[str | None] = [None] * nf
    ok = content_end - content_start >= channels * ref_bytes
    for i in np.flatnonzero(~ok).tolist():
        reason[i] = (f"delta frame of {int(content_end[i] - content_start[i])} content bytes "
                     f"is shorter than its {channels * ref_bytes}-byte reference sample")
    pos = content_start + channels * ref_bytes
    cursor = np.zeros(nf, dtype=np.int64)  # delta samples so far per frame
    blocks: list[tuple[I64, I64, I64, I64, int]] = []  # frame, width, count, data start, no.
    active = ok & (pos < content_end)
    block_no = 0
    while active.any():
        idx = np.flatnonzero(active)
        p = pos[idx]
        head_ok = p + 2 <= content_end[idx]
        w = np.where(head_ok, rg.u8(p), 0)
        c = np.where(head_ok, rg.u8(p + 1), 0)
        nbytes = (w * c * channels + 7) // 8
        width_ok = w <= 32
        body_ok = p + 2 + nbytes <= content_end[idx]
        good = head_ok & width_ok & body_ok
        for j in np.flatnonzero(~good).tolist():
            f = int(idx[j])
            at = int(p[j] - content_start[f])
            if not head_ok[j]:
                reason[f] = f"delta block header truncated at content byte {at}"
            elif not width_ok[j]:
                reason[f] = f"delta width {int(w[j])} bits at content byte {at} exceeds 32"
            else:
                reason[f] = (f"delta block of {int(c[j])} samples x {int(w[j])} bits needs "
                             f"{int(nbytes[j])} bytes, only "
                             f"{int(content_end[f] - p[j] - 2)} left")
        ok[idx[~good]] = False
        g = idx[good]
        blocks.append((g, w[good], c[good], p[good] + 2, block_no))
        cursor[g] += c[good]
        pos[g] = p[good] + 2 + nbytes[good]
        active = ok & (pos < content_end)
        block_no += 1

    counts = np.where(ok, 1 + cursor, 0).astype(np.int64)
    okf = np.flatnonzero(ok)
    # reference samples, one row per good frame
    ref_raw = rg.rows(content_start[okf], channels * ref_bytes).reshape(okf.size, channels,
                                                                        ref_bytes)
    ref = np.zeros((okf.size, channels), dtype=np.int64)
    for b in range(ref_bytes):
        ref |= ref_raw[:, :, b].astype(np.int64) << (8 * b)
    if resolution < 64:
        ref = np.where(ref & (1 << (resolution - 1)), ref - (1 << resolution), ref)
    ref32 = ref.astype(np.uint64).astype(np.uint32).view(np.int32)  # wrap like the SDK

    # delta blocks ordered by frame, then block number (the order of samples in a frame)
    if blocks:
        bf = np.concatenate([b[0] for b in blocks])
        bw = np.concatenate([b[1] for b in blocks])
        bc = np.concatenate([b[2] for b in blocks])
        bd = np.concatenate([b[3] for b in blocks])
        bn = np.concatenate([np.full(b[0].size, b[4]) for b in blocks])
        keep = ok[bf]  # frames that failed on a later block are dropped whole
        order = np.lexsort((bn[keep], bf[keep]))
        bf, bw, bc, bd = bf[keep][order], bw[keep][order], bc[keep][order], bd[keep][order]
    else:
        bf = bw = bc = bd = np.zeros(0, dtype=np.int64)
    # bit position of every delta: consecutive within a block, jumping between blocks
    per_block = bc * channels
    wel = np.repeat(bw, per_block)  # width of each delta
    nd = wel.size
    deltas = np.zeros((0, channels), dtype=np.int32)
    if nd:
        bstart = np.cumsum(per_block) - per_block  # first delta of each block
        nonempty = per_block > 0
        inc = np.empty(nd, dtype=np.int64)
        inc[1:] = wel[:-1]
        jump = bd[nonempty] * 8
        prev_last = jump[:-1] + (per_block[nonempty][:-1] - 1) * bw[nonempty][:-1]
        inc[bstart[nonempty]] = np.concatenate((jump[:1], jump[1:] - prev_last))
        bitpos = np.cumsum(inc)
        word = rg.words(bitpos >> 3)
        # move the field's top bit to bit 63, then shift back arithmetically: sign-extends
        top = (64 - (bitpos & 7) - wel).astype(np.uint64)
        field = (word << top).view(np.int64) >> (64 - wel)
        if bw.min(initial=1) == 0:  # zero-width blocks: every delta is 0
            field[wel == 0] = 0
        deltas = field.astype(np.int32).reshape(-1, channels)

    # rows of a frame: reference, then reference + running sum of its deltas. One
    # running sum over all frames: each reference row enters as the step from the
    # previous frame's last value (int32 wraps exactly like the SDK's Int sums)
    total = int(counts.sum())
    first_row = (np.cumsum(counts) - counts)[okf]
    is_ref = np.zeros(total, dtype=bool)
    is_ref[first_row] = True
    n_deltas = counts[okf] - 1
    with np.errstate(over="ignore"):
        frame_sum = np.zeros((okf.size, channels), dtype=np.int32)
        has = n_deltas > 0
        if nd:
            dstart = (np.cumsum(n_deltas) - n_deltas)[has]
            frame_sum[has] = np.add.reduceat(deltas, dstart, axis=0, dtype=np.int32)
        last_value = ref32 + frame_sum
        steps = np.empty((total, channels), dtype=np.int32)
        ref_step = ref32.copy()
        ref_step[1:] -= last_value[:-1]
        steps[is_ref] = ref_step
        steps[~is_ref] = deltas
        values = np.cumsum(steps, axis=0, dtype=np.int32)
    return _DeltaBatch(ok=ok, reason=reason, counts=counts, values=values)


# --------------------------------------------------------------------------------------------
# Data frames: one at a time (plain Python)
# --------------------------------------------------------------------------------------------


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


def parse_data_frame(payload: bytes, *, factor: float = 1.0) -> dict[str, Any]:
    """Decode one PMD data frame into plain Python values.

    Returns ``measurement_type`` (name), ``sensor_ns`` (time of the last sample, sensor
    clock), ``frame_type``, ``compressed`` and per-kind values: ECG ``ecg_uv`` (types 0-2;
    type 3 gives ``data0``/``data1``/``status``), ACC ``acc_g`` (list of [x, y, z]), PPI
    ``ppi_ms``, ``ppi_error_ms``, ``hr_bpm`` and the flag lists; gyroscope ``gyro_dps``,
    magnetometer ``mag_gauss`` (+ ``calibration``), ``pressure_bar``, ``temperature_c``,
    ``skin_temperature_c`` (no streams for these). ``factor`` is the scale factor from
    the start response (delta-compressed ACC type 0 is in units of it).
    """
    char = "pmd_data"
    h = parse_header(payload)
    content = payload[HEADER_LEN:]
    out: dict[str, Any] = {
        "measurement_type": _type_name(h.measurement_type),
        "sensor_ns": h.sensor_ns,
        "frame_type": h.frame_type,
        "compressed": h.compressed,
    }
    kind = (h.measurement_type, h.compressed, h.frame_type)

    def need(size: int) -> int:
        if not content or len(content) % size:
            raise _err(char, f"{out['measurement_type']} frame type {h.frame_type} content of "
                             f"{len(content)} bytes is not a whole number (>= 1) of "
                             f"{size}-byte samples", payload)
        return len(content) // size

    if kind[0] == MeasurementType.ECG and not h.compressed and h.frame_type in (0, 1, 2):
        n = need(3)
        vals = []
        for k in range(n):
            b0, b1, b2 = content[3 * k:3 * k + 3]
            if h.frame_type == 0:
                vals.append(_signed(content[3 * k:3 * k + 3]))
            elif h.frame_type == 1:
                vals.append(b0 | ((b1 & 0x3F) << 8))
            else:
                vals.append(b0 | (b1 << 8) | ((b2 & 0x03) << 16))
        out["ecg_uv"] = vals
        if h.frame_type == 1:
            out["oversampling"] = [bool(content[3 * k + 2] & 0x01) for k in range(n)]
            out["skin_contact"] = [(content[3 * k + 2] & 0x06) >> 1 for k in range(n)]
            out["contact_impedance"] = [(content[3 * k + 2] & 0x18) >> 3 for k in range(n)]
        if h.frame_type == 2:
            out["ecg_data_tag"] = [(content[3 * k + 2] & 0x1C) >> 2 for k in range(n)]
            out["pace_data_tag"] = [(content[3 * k + 2] & 0xE0) >> 5 for k in range(n)]
        return out
    if kind == (MeasurementType.ECG, False, 3):
        n = need(7)
        out["data0"] = [_signed(content[7 * k:7 * k + 3]) for k in range(n)]
        out["data1"] = [_signed(content[7 * k + 3:7 * k + 6]) for k in range(n)]
        out["status"] = [content[7 * k + 6] for k in range(n)]
        return out
    if kind[0] == MeasurementType.ACC and not h.compressed and h.frame_type in (0, 1, 2):
        size = ACC_RAW_SAMPLE_BYTES[h.frame_type]
        n = need(3 * size)
        out["acc_g"] = [
            [_signed(content[(3 * k + c) * size:(3 * k + c + 1) * size]) / 1000.0
             for c in range(3)]
            for k in range(n)
        ]
        return out
    if kind[0] == MeasurementType.ACC and h.compressed and h.frame_type in (0, 1):
        samples = parse_delta_frame(content, 3, 16, payload=payload)
        scale = factor if h.frame_type == 0 else factor / 1000.0
        out["acc_g"] = [[v * scale for v in s] for s in samples]
        out["factor"] = factor  # type 0 is in units of the start response's factor
        return out
    if kind == (MeasurementType.PPI, False, 0):
        n = need(6)
        rows = [content[6 * k:6 * k + 6] for k in range(n)]
        out["hr_bpm"] = [r[0] for r in rows]
        out["ppi_ms"] = [r[1] | (r[2] << 8) for r in rows]
        out["ppi_error_ms"] = [r[3] | (r[4] << 8) for r in rows]
        out["blocker"] = [bool(r[5] & 0x01) for r in rows]
        out["skin_contact"] = [bool(r[5] & 0x02) for r in rows]
        out["skin_contact_supported"] = [bool(r[5] & 0x04) for r in rows]
        return out
    extra = _parse_other_frame(h, content, payload, factor)
    if extra is not None:
        out.update(extra)
        return out
    raise _err(char, f"{out['measurement_type']} {'compressed' if h.compressed else 'raw'} "
                     f"frame type {h.frame_type} is not supported", payload)


def _as_float32(v: int, factor: float = 1.0) -> float | None:
    """An int32 bit pattern read as float32, times ``factor``; NaN/inf become ``None``
    (JSON has no NaN)."""
    x = float(struct.unpack("<f", struct.pack("<i", v))[0]) * factor
    return x if math.isfinite(x) else None


_UNSTREAMED = {MeasurementType.GYRO, MeasurementType.MAGNETOMETER, MeasurementType.PRESSURE,
               MeasurementType.TEMPERATURE, MeasurementType.SKIN_TEMP}

MAG_CALIBRATION = {0: "unknown", 1: "poor", 2: "ok", 3: "good"}
"""Magnetometer calibration status codes (``MagData.kt``); others are "not_available"."""


def _parse_other_frame(
    h: FrameHeader, content: bytes, payload: bytes, factor: float
) -> dict[str, Any] | None:
    """Measurements sensord does not stream but decodes one payload at a time (Polar SDK
    ``GyrData.kt``, ``MagData.kt``, ``PressureData.kt``, ``TemperatureData.kt``,
    ``SkinTemperatureData.kt``): values only, no sample times. ``None`` if unknown."""
    m, comp, ft = h.measurement_type, h.compressed, h.frame_type
    scalar_key = {MeasurementType.PRESSURE: "pressure_bar",
                  MeasurementType.TEMPERATURE: "temperature_c",
                  MeasurementType.SKIN_TEMP: "skin_temperature_c"}.get(m)  # type: ignore[call-overload]
    if scalar_key is not None and ft == 0:
        if comp:  # 32-bit float bit patterns, delta-coded as integers
            bits = [s[0] for s in parse_delta_frame(content, 1, 32, payload=payload)]
        else:
            if not content or len(content) % 4:
                raise _err("pmd_data", f"{_type_name(m)} content of {len(content)} bytes is not "
                                       "a whole number (>= 1) of 4-byte floats", payload)
            bits = [int.from_bytes(content[k:k + 4], "little", signed=True)
                    for k in range(0, len(content), 4)]
        return {scalar_key: [_as_float32(b, factor) for b in bits]}
    if m == MeasurementType.GYRO and comp and ft in (0, 1):
        if ft == 0:
            rows = parse_delta_frame(content, 3, 16, payload=payload)
            return {"gyro_dps": [[v * factor for v in r] for r in rows]}
        rows = parse_delta_frame(content, 3, 32, payload=payload)
        return {"gyro_dps": [[_as_float32(v, factor) for v in r] for r in rows]}
    if m == MeasurementType.MAGNETOMETER and comp and ft in (0, 1):
        if ft == 0:
            rows = parse_delta_frame(content, 3, 16, payload=payload)
            return {"mag_gauss": [[v * factor for v in r] for r in rows]}
        rows = parse_delta_frame(content, 4, 16, payload=payload)  # milligauss + status
        return {"mag_gauss": [[v * factor / 1000 for v in r[:3]] for r in rows],
                "calibration": [MAG_CALIBRATION.get(r[3], "not_available") for r in rows]}
    return None


def parse_data_frame_json(payload: bytes) -> dict[str, Any]:
    """:func:`parse_data_frame` with the default factor (for ``sensord decode``)."""
    return parse_data_frame(payload)


# --------------------------------------------------------------------------------------------
# Data frames: whole batch (numpy)
# --------------------------------------------------------------------------------------------


def _frame_spacing(
    ts: I64, counts: I64, key: I64, seg: I64, nominal_ns: Mapping[int, float], mtype: I64
) -> tuple[npt.NDArray[np.float64], I64]:
    """Sample spacing (ns) of each frame and the sensor time its samples count from.

    Frames in arrival order. Returns ``(dt, anchor)``: where the previous frame of the
    same kind is usable, ``anchor`` is its time stamp and sample ``k`` lies at
    ``anchor + dt (k + 1)`` (the SDK's rule); otherwise ``anchor`` is -1 and samples
    count back from the frame's own time stamp with the typical spacing.
    """
    nf = ts.size
    keys = distinct(key)
    # previous frame of the same key (measurement type) in the same clock stretch
    if len(keys) == 1 and seg[0] == seg[-1]:  # one of each (seg never decreases)
        prev = np.arange(-1, nf - 1, dtype=np.int64)
    else:
        prev = np.full(nf, -1, dtype=np.int64)
        order = np.lexsort((np.arange(nf), seg, key))
        same = (key[order][1:] == key[order][:-1]) & (seg[order][1:] == seg[order][:-1])
        prev[order[1:][same]] = order[:-1][same]
    has_prev = (prev >= 0) & (counts > 0)
    gap = (ts - ts[np.maximum(prev, 0)]).astype(np.float64)
    spacing = np.where(has_prev, gap / np.maximum(counts, 1), np.nan)
    dt = spacing.copy()
    usable = has_prev & (spacing > 0)
    for k in keys:
        sel = key == k
        valid = spacing[sel & usable]
        fallback = nominal_ns.get(int(mtype[sel][0]), 0.0)
        typical = median(valid) if valid.size else fallback
        bad = sel & ~(usable & (spacing <= 1.5 * typical))
        dt[bad] = typical
        usable[bad] = False
    anchor = np.where(usable, ts[np.maximum(prev, 0)], -1)
    return dt, anchor


def _clock_segments(ts: I64, recv: I64 | None) -> I64:
    """Stretch number of each frame: new stretch where the sensor clock runs backwards or
    disagrees with the host clock by more than :data:`CLOCK_BREAK_NS`."""
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    dts = ts[1:] - ts[:-1]
    brk = dts < 0
    if recv is not None:
        brk |= np.abs(dts - (recv[1:] - recv[:-1])) > CLOCK_BREAK_NS
    return np.concatenate(([0], np.cumsum(brk))).astype(np.int64)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Decoded samples of some frames: ``values`` rows in frame order, ``counts`` per frame."""

    frames: I64
    counts: I64
    values: npt.NDArray[np.float64]


def _fixed_chunks(
    rg: Ragged, frames: I64, content_start: I64, content_len: I64, sample_bytes: int,
    decode: Any,
) -> list[_Chunk]:
    """Decode fixed-size samples: one 2-D gather per distinct frame length."""
    chunks = []
    lengths = content_len[frames]
    for length in distinct(lengths):
        f = frames[lengths == length]
        raw = rg.rows(content_start[f], int(length))
        n = int(length) // sample_bytes
        vals = decode(raw.reshape(f.size * n, sample_bytes))
        chunks.append(_Chunk(f, np.full(f.size, n, dtype=np.int64), vals))
    return chunks


def _int_le(raw: npt.NDArray[np.uint8], size: int) -> I64:
    """Signed little-endian integers of ``size`` bytes from the last axis of ``raw``."""
    v = np.zeros(raw.shape[:-1], dtype=np.int64)
    for b in range(size):
        v |= raw[..., b].astype(np.int64) << (8 * b)
    bit = 1 << (8 * size - 1)
    return v - ((v & bit) << 1)


def _ecg_decoder(ftype: int) -> Any:
    def dec(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        b0, b1, b2 = (raw[:, k].astype(np.int64) for k in range(3))
        if ftype == 0:
            v = _int_le(raw, 3)
        elif ftype == 1:
            v = b0 | ((b1 & 0x3F) << 8)
        else:
            v = b0 | (b1 << 8) | ((b2 & 0x03) << 16)
        return v.astype(np.float64)

    return dec


def _acc_raw_decoder(size: int) -> Any:
    def dec(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        if size == 2:
            v: npt.NDArray[Any] = raw.view("<i2")
        elif size == 1:
            v = raw.view(np.int8)
        else:
            v = _int_le(raw.reshape(-1, 3, 3), 3)
        return np.multiply(v.reshape(-1, 3), 0.001, dtype=np.float64)

    return dec


def decode_data_batch(
    payloads: Sequence[bytes],
    recv_wall_ns: I64 | None,
    context: DecodeContext | None = None,
) -> DecodeResult:
    """Decode a batch of PMD data frames of one device into ``ecg``, ``acc``, ``ppi``.

    Parameters
    ----------
    payloads
        Data-characteristic notifications in arrival order.
    recv_wall_ns
        Host receive times (UTC ns); ``None`` to read sensor time as ns since 2000-01-01.
    context
        Scale factors (``pmd_factor``) and requested sample rates
        (``pmd_sample_rate_hz``) by measurement type, from the control point.
    """
    ctx = context if context is not None else DecodeContext()
    n = len(payloads)
    recv = None if recv_wall_ns is None else np.asarray(recv_wall_ns, dtype=np.int64)
    if recv is not None and recv.shape != (n,):
        raise ValueError(f"recv_wall_ns has shape {recv.shape}, expected ({n},)")
    result = DecodeResult()
    rg = Ragged.from_payloads(payloads)
    has_header = rg.length >= HEADER_LEN
    hdr = rg.rows(rg.start[has_header], HEADER_LEN)
    mtype = np.full(n, -1, dtype=np.int64)
    ftype_byte = np.zeros(n, dtype=np.int64)
    ts = np.zeros(n, dtype=np.int64)
    mtype[has_header] = hdr[:, 0] & 0x3F
    ftype_byte[has_header] = hdr[:, 9]
    ts[has_header] = hdr[:, 1:9].copy().view("<u8").reshape(-1).astype(np.int64)
    content_start = rg.start + HEADER_LEN
    content_len = rg.length - HEADER_LEN
    reasons: dict[int, str] = {}
    for i in np.flatnonzero(~has_header).tolist():
        reasons[i] = (f"frame of {int(rg.length[i])} bytes is shorter than the "
                      f"{HEADER_LEN}-byte header")

    def whole(sel: npt.NDArray[np.bool_], size: int, name: str) -> I64:
        good = sel & (content_len > 0) & (content_len % size == 0)
        for i in np.flatnonzero(sel & ~good).tolist():
            reasons[i] = (f"{name} content of {int(content_len[i])} bytes is not a whole "
                          f"number (>= 1) of {size}-byte samples")
        return np.flatnonzero(good)

    ecg_chunks: list[_Chunk] = []
    acc_chunks: list[_Chunk] = []
    ppi_frames = np.zeros(0, dtype=np.int64)
    ecg, acc, ppi = MeasurementType.ECG, MeasurementType.ACC, MeasurementType.PPI
    kinds = distinct(mtype[has_header] * 256 + ftype_byte[has_header])
    for kind in kinds:
        mt, fb = divmod(int(kind), 256)
        sel = has_header & (mtype == mt) & (ftype_byte == fb)
        ftype, comp = fb & 0x7F, bool(fb & 0x80)
        if mt == ecg and not comp and ftype in (0, 1, 2):
            frames = whole(sel, 3, f"ECG frame type {ftype}")
            ecg_chunks += _fixed_chunks(rg, frames, content_start, content_len, 3,
                                        _ecg_decoder(ftype))
        elif mt == acc and not comp and ftype in ACC_RAW_SAMPLE_BYTES:
            size = ACC_RAW_SAMPLE_BYTES[ftype]
            frames = whole(sel, 3 * size, f"ACC frame type {ftype}")
            acc_chunks += _fixed_chunks(rg, frames, content_start, content_len, 3 * size,
                                        _acc_raw_decoder(size))
        elif mt == acc and comp and ftype in (0, 1):
            frames = np.flatnonzero(sel)
            db = _decode_delta_batch(rg, content_start[frames],
                                     rg.start[frames] + rg.length[frames], 3, 16)
            for j in np.flatnonzero(~db.ok).tolist():
                reasons[int(frames[j])] = db.reason[j] or "bad delta frame"
            factor = ctx.pmd_factor.get(int(acc), 1.0)
            scale = factor if ftype == 0 else factor / 1000.0
            acc_chunks.append(_Chunk(frames[db.ok], db.counts[db.ok],
                                     db.values.astype(np.float64) * scale))
        elif mt == ppi and not comp and ftype == 0:
            ppi_frames = whole(sel, 6, "PPI frame type 0")
        elif (mt == ecg and not comp and ftype == 3) or mt in _UNSTREAMED:
            for i in np.flatnonzero(sel).tolist():
                reasons[i] = (f"{_type_name(mt)} {'compressed' if comp else 'raw'} frame type "
                              f"{ftype} has no sample stream in sensord; decode it one by one")
        else:
            for i in np.flatnonzero(sel).tolist():
                reasons[i] = (f"{_type_name(mt)} {'compressed' if comp else 'raw'} frame "
                              f"type {ftype} is not supported")

    for i in sorted(reasons):
        result.errors.append(_err("pmd_data", reasons[i], payloads[i], i))
    result.n_decoded = n - len(reasons)

    # ---- time: sensor clock per frame, then host UTC per clock stretch
    counts = np.zeros(n, dtype=np.int64)
    for ch in ecg_chunks + acc_chunks:
        counts[ch.frames] = ch.counts
    timed = np.flatnonzero(counts > 0)
    offset = np.full(n, POLAR_EPOCH_UNIX_NS, dtype=np.int64)  # sensor -> host UTC
    dt = np.zeros(n, dtype=np.float64)
    anchor = np.full(n, -1, dtype=np.int64)
    if timed.size:
        # every frame timed (the usual batch): views instead of copies
        sub: slice | I64 = slice(None) if timed.size == n else timed
        ts_t = ts[sub]
        recv_t = None if recv is None else recv[sub]
        seg_t = _clock_segments(ts_t, recv_t)
        if recv_t is not None:
            d = recv_t - ts_t
            if seg_t[-1] == 0:  # one clock stretch (seg_t counts up from 0)
                offset[sub] = d.min()
            else:
                env = np.full(int(seg_t.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
                np.minimum.at(env, seg_t, d)
                offset[sub] = env[seg_t]
        nominal = {int(k): 1e9 / v for k, v in DEFAULT_SAMPLE_RATE_HZ.items()}
        nominal.update({int(k): 1e9 / v for k, v in ctx.pmd_sample_rate_hz.items() if v > 0})
        key = mtype[sub]  # one sample clock per measurement, whatever the frame type
        dt[sub], anchor[sub] = _frame_spacing(ts_t, counts[sub], key, seg_t, nominal, key)
    from_prev = anchor >= 0
    base = np.where(from_prev, anchor, ts)

    def assemble(chunks: list[_Chunk]) -> tuple[I64, npt.NDArray[np.float64]]:
        times = []
        for ch in chunks:
            f = ch.frames
            # sample k: base + dt (k + c) with c = 1 after a previous frame, else -(n - 1);
            # the last sample is the frame's own time stamp
            c = np.where(from_prev[f], 1, 1 - ch.counts).astype(np.float64)
            if f.size and (ch.counts == ch.counts[0]).all():
                k = np.arange(int(ch.counts[0]), dtype=np.float64)
                rel = np.rint((k[None, :] + c[:, None]) * dt[f][:, None]).astype(np.int64)
                t = base[f][:, None] + rel
                t[:, -1] = ts[f]
                times.append((t + offset[f][:, None]).ravel())
            else:
                owner, rank = group_index(ch.counts)
                fo = f[owner]
                t = base[fo] + np.rint((rank + c[owner]) * dt[fo]).astype(np.int64)
                last = np.cumsum(ch.counts) - 1
                t[last] = ts[f]
                times.append(t + offset[fo])
        if len(chunks) == 1:  # the usual batch: nothing to join
            t_all, v_all = times[0], chunks[0].values
        else:
            t_all = np.concatenate(times)
            v_all = np.concatenate([ch.values for ch in chunks])
        if len(chunks) > 1 or (t_all[1:] < t_all[:-1]).any():
            srt = np.argsort(t_all, kind="stable")
            t_all, v_all = t_all[srt], v_all[srt]
        return t_all, v_all

    if ecg_chunks:
        t, v = assemble(ecg_chunks)
        result.streams["ecg"] = EcgStream(t_ns=t, ecg_uv=v)
    if acc_chunks:
        t, v = assemble(acc_chunks)
        result.streams["acc"] = AccStream(t_ns=t, acc_g=v.reshape(-1, 3))
    if ppi_frames.size:
        pcounts = content_len[ppi_frames] // 6
        owner, rank = group_index(pcounts)
        raw = rg.rows(content_start[ppi_frames][owner] + 6 * rank, 6)
        flags = raw[:, 5]
        ppi_ms = (raw[:, 1].astype(np.int64) | (raw[:, 2].astype(np.int64) << 8)).astype(
            np.float64)
        if recv is not None:
            t = reconstruct_beat_times(recv[ppi_frames], pcounts, ppi_ms)
        else:  # chain back from each frame's sensor time, as the SDK does
            after = np.cumsum(ppi_ms[::-1])[::-1] - ppi_ms  # intervals after this one
            frame_end = np.cumsum(pcounts) - 1
            tail = after - after[frame_end][owner]  # ... within the same frame
            t = (ts + offset)[ppi_frames][owner] - np.rint(tail * 1e6).astype(np.int64)
        result.streams["ppi"] = PpiStream(
            t_ns=t,
            ppi_ms=ppi_ms,
            ppi_error_ms=(raw[:, 3].astype(np.int64) | (raw[:, 4].astype(np.int64) << 8)).astype(
                np.float64),
            hr_bpm=raw[:, 0].astype(np.float64),
            blocker=(flags & 0x01) != 0,
            skin_contact=(flags & 0x02) != 0,
            skin_contact_supported=(flags & 0x04) != 0,
        )
    return result


# --------------------------------------------------------------------------------------------
# Encoders for data frames (simulator, round-trip tests)
# --------------------------------------------------------------------------------------------


def encode_acc_raw(acc_mg: npt.ArrayLike, sensor_ns: int, frame_type: int = 1) -> bytes:
    """ACC raw frame (types 0-2: int8/int16/int24 per axis, milli-g)."""
    size = ACC_RAW_SAMPLE_BYTES[frame_type]
    arr = np.asarray(acc_mg, dtype=np.int64).reshape(-1, 3)
    lim = 1 << (8 * size - 1)
    if arr.size and (arr.min() < -lim or arr.max() >= lim):
        raise ValueError(f"ACC values do not fit in {size} signed bytes")
    content = b"".join((int(v) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
                       for v in arr.ravel())
    return encode_data_frame(MeasurementType.ACC, sensor_ns, frame_type, content)


def encode_acc_delta(samples: npt.ArrayLike, sensor_ns: int, frame_type: int = 1,
                     *, block_samples: int = 255) -> bytes:
    """ACC delta-compressed frame (``0x80``: units of the factor; ``0x81``: milli-g)."""
    content = encode_delta_frame(samples, 16, block_samples=block_samples)
    return encode_data_frame(MeasurementType.ACC, sensor_ns, frame_type, content, compressed=True)


def encode_ecg(ecg_uv: npt.ArrayLike, sensor_ns: int) -> bytes:
    """ECG raw frame type 0 (int24 microvolts)."""
    arr = np.asarray(ecg_uv, dtype=np.int64)
    content = b"".join((int(v) & 0xFFFFFF).to_bytes(3, "little") for v in arr)
    return encode_data_frame(MeasurementType.ECG, sensor_ns, 0, content)


def encode_ppi(
    ppi_ms: Sequence[int], *, hr_bpm: Sequence[int] | None = None,
    error_ms: Sequence[int] | None = None, flags: Sequence[int] | None = None,
    sensor_ns: int = 0,
) -> bytes:
    """PPI frame type 0 (``hr u8 | ppi u16 | error u16 | flags u8`` per interval)."""
    k = len(ppi_ms)
    hr = hr_bpm if hr_bpm is not None else [round(60000 / max(p, 1)) & 0xFF for p in ppi_ms]
    err = error_ms if error_ms is not None else [10] * k
    fl = flags if flags is not None else [0x06] * k
    content = b"".join(struct.pack("<BHHB", hr[j], ppi_ms[j], err[j], fl[j]) for j in range(k))
    return encode_data_frame(MeasurementType.PPI, sensor_ns, 0, content)
