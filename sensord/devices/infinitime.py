"""PineTime / InfiniTime Motion Service (custom 128-bit UUIDs).

Layouts (InfiniTime ``doc/MotionService.md`` and ``src/components/ble/MotionService.cpp``):

* Step count ``00030001-78fc-48fe-8e23-433b3a1942d0``: ``uint32`` LE, the step counter of
  the BMA421/BMA425 (cumulative, reset by the watch at midnight).
* Raw motion values ``00030002-78fc-48fe-8e23-433b3a1942d0``: three ``int16`` LE, x, y, z.

Scale: 1 g = 1024 units. InfiniTime configures the accelerometer for the +-2 g range at
12-bit resolution (``src/drivers/Bma421.cpp``: ``BMA4_ACCEL_RANGE_2G``); Bosch's driver
(``Bma421_C/bma4.c``, ``bma4_read_accel_xyz``) right-aligns 12-bit samples, which gives
2^11 / 2 g = 1024 LSB/g. Since InfiniTime 1.15 (commit c2c53bc6, PR #1950) the driver
also rescales explicitly to "binary milli-g" (1024 per g) for any range, so the value
on the air is 1024 per g in every release. The watch samples motion every 100 ms
(``SystemTask::UpdateMotion``) and notifies only when a value changed, so notifications
arrive at up to 10 Hz, irregularly; there is no device time stamp and samples are placed
at their receive time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from sensord.devices._common import DecodeResult, Ragged, decode_error
from sensord.errors import DecodeError
from sensord.model import I64, AccStream, StepStream

PROFILE = "infinitime_motion"

MOTION_SERVICE = "00030000-78fc-48fe-8e23-433b3a1942d0"
STEP_COUNT = "00030001-78fc-48fe-8e23-433b3a1942d0"
MOTION_VALUES = "00030002-78fc-48fe-8e23-433b3a1942d0"

LSB_PER_G = 1024.0
"""Raw motion units per g (see the module docstring)."""


def _err(char: str, reason: str, payload: bytes, index: int | None = None) -> DecodeError:
    return decode_error(reason, profile=PROFILE, characteristic=char, payload=payload, index=index)


def parse_step_count(payload: bytes) -> int:
    """Step count: one uint32 LE."""
    if len(payload) != 4:
        raise _err("step_count", f"expected 4 bytes (uint32), got {len(payload)}", payload)
    return int(struct.unpack("<I", payload)[0])


def parse_motion_values(payload: bytes) -> dict[str, Any]:
    """Raw motion values: three int16 LE; returns raw units and ``acc_g``."""
    if len(payload) != 6:
        raise _err("motion_values", f"expected 6 bytes (3 x int16), got {len(payload)}", payload)
    x, y, z = struct.unpack("<3h", payload)
    return {"raw": [x, y, z], "acc_g": [x / LSB_PER_G, y / LSB_PER_G, z / LSB_PER_G]}


def decode_steps_batch(payloads: Sequence[bytes], recv_wall_ns: I64) -> DecodeResult:
    """Step-count notifications -> ``steps`` stream at receive time."""
    return _fixed_batch(payloads, recv_wall_ns, 4, "step_count", parse_step_count)


def decode_motion_batch(payloads: Sequence[bytes], recv_wall_ns: I64) -> DecodeResult:
    """Raw-motion notifications -> ``acc`` stream (g) at receive time."""
    return _fixed_batch(payloads, recv_wall_ns, 6, "motion_values", parse_motion_values)


def _fixed_batch(
    payloads: Sequence[bytes], recv_wall_ns: I64, size: int, char: str, parse: Any
) -> DecodeResult:
    recv = np.asarray(recv_wall_ns, dtype=np.int64)
    if recv.shape != (len(payloads),):
        raise ValueError(f"recv_wall_ns has shape {recv.shape}, expected ({len(payloads)},)")
    rg = Ragged.from_payloads(payloads)
    ok = rg.length == size
    result = DecodeResult()
    for i in np.flatnonzero(~ok).tolist():
        try:
            parse(payloads[i])
        except DecodeError as exc:
            result.errors.append(_err(char, exc.reason, payloads[i], int(i)))
    start = rg.start[ok]
    t = recv[ok]
    if size == 4:
        result.streams["steps"] = StepStream(t_ns=t, steps=rg.u32(start))
    else:
        xyz = np.stack([rg.i16(start), rg.i16(start + 2), rg.i16(start + 4)], axis=1)
        result.streams["acc"] = AccStream(t_ns=t, acc_g=xyz / LSB_PER_G)
    result.n_decoded = int(ok.sum())
    return result


def encode_step_count(steps: int) -> bytes:
    """Encode a step count (uint32 LE)."""
    return struct.pack("<I", steps)


def encode_motion_values(x: int, y: int, z: int) -> bytes:
    """Encode raw motion values (three int16 LE, 1024 per g)."""
    return struct.pack("<3h", x, y, z)


def g_to_raw(acc_g: float) -> int:
    """Nearest raw motion value for an acceleration in g, clipped to int16."""
    return int(max(-32768, min(32767, round(acc_g * LSB_PER_G))))
