"""Helpers shared by the device decoders: UUIDs, ragged byte buffers, result containers.

Pure: bytes and arrays in, values out. No I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.errors import DecodeError
from sensord.model import sig_uuid

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

_PAD = 16
_HEX16 = re.compile(r"^(0x)?[0-9a-f]{4}$")
_UUID128 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_uuid(uuid: str) -> str:
    """Return the 128-bit lower-case form of a UUID given as ``2a37``, ``0x2A37`` or 128-bit.

    Raises
    ------
    ValueError
        If the text is not a 16-bit or 128-bit UUID.
    """
    text = uuid.strip().lower()
    if _HEX16.match(text):
        return sig_uuid(int(text.removeprefix("0x"), 16))
    if _UUID128.match(text):
        return text
    raise ValueError(f"not a Bluetooth UUID: {uuid!r} (expected e.g. 2a37 or a 128-bit UUID)")


@dataclass(frozen=True, slots=True)
class Ragged:
    """A batch of payloads as one flat byte buffer plus per-payload offsets and lengths."""

    buf: U8
    start: I64
    length: I64

    @classmethod
    def from_payloads(cls, payloads: Sequence[bytes]) -> Ragged:
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        start = np.zeros(len(payloads), dtype=np.int64)
        if len(payloads) > 1:
            np.cumsum(lengths[:-1], out=start[1:])
        # spare zero bytes: fixed-width reads up to _PAD bytes past a row start stay inside
        # the buffer; rows are validated against their own length before values are used
        buf = np.frombuffer(b"".join(payloads) + bytes(_PAD), dtype=np.uint8)
        return cls(buf=buf, start=start, length=lengths)

    def rows(self, start: I64, length: int) -> U8:
        """Bytes ``[start, start + length)`` of each given start as a ``(n, length)`` array.

        Each start must have ``length`` valid bytes (or padding) after it.
        """
        if length == 0:
            return np.zeros((start.size, 0), dtype=np.uint8)
        # every window of ``length`` bytes (a view, as sliding_window_view gives, without
        # its checks: this runs a few times per decoded batch), then the rows wanted
        windows = np.ndarray((self.buf.size - length + 1, length), dtype=np.uint8,
                             buffer=self.buf, strides=(1, 1))
        return windows[start]

    def words(self, pos: I64) -> npt.NDArray[np.uint64]:
        """The 8 bytes from each position as a little-endian uint64 (reads into padding)."""
        return self.rows(pos, 8).view("<u8").reshape(-1)

    def u8(self, pos: I64) -> I64:
        return self.buf[pos].astype(np.int64)

    def u16(self, pos: I64) -> I64:
        b = self.buf
        return b[pos].astype(np.int64) | (b[pos + 1].astype(np.int64) << 8)

    def u32(self, pos: I64) -> I64:
        return self.u16(pos) | (self.u16(pos + 2) << 16)

    def i16(self, pos: I64) -> I64:
        v = self.u16(pos)
        return v - ((v & 0x8000) << 1)


def median(x: npt.NDArray[Any]) -> float:
    """``float(np.median(x))`` of a non-empty 1-D array without NaN, in fewer numpy calls
    (for small arrays, several times faster): the middle value, or the mean of the two
    middle values of an even count, summed in float64 as ``np.median`` does."""
    s = np.sort(x)
    h = s.size // 2
    if s.size % 2:
        return float(s[h])
    return (float(s[h - 1]) + float(s[h])) / 2.0


def distinct(x: npt.NDArray[Any]) -> list[Any]:
    """``np.unique(x).tolist()`` (sorted distinct values) of a 1-D array; one comparison
    when all values are the same (a batch of one kind of frame, the usual case)."""
    if x.size and not bool((x != x[0]).any()):
        return [x[0].item()]
    return np.unique(x).tolist()


def group_index(counts: I64) -> tuple[I64, I64]:
    """For groups of sizes ``counts``, each element's group number and its rank in the group."""
    total = int(counts.sum())
    group = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    rank = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    return group, rank


@dataclass(slots=True)
class DecodeContext:
    """What a decoder needs to know beyond the payload itself.

    Filled from earlier exchanges on the same connection, e.g. the scale factor a Polar
    device returns when a PMD measurement starts (``pmd_factor`` by measurement type) or
    the sample rate that was requested (``pmd_sample_rate_hz``).
    """

    pmd_factor: dict[int, float] = field(default_factory=dict)
    pmd_sample_rate_hz: dict[int, float] = field(default_factory=dict)

    def update(self, other: DecodeContext) -> None:
        """Merge ``other`` into this context (``other`` wins)."""
        self.pmd_factor.update(other.pmd_factor)
        self.pmd_sample_rate_hz.update(other.pmd_sample_rate_hz)


@dataclass(slots=True)
class DecodeResult:
    """What one batch of notifications of one characteristic decoded to.

    Attributes
    ----------
    streams
        Columnar streams by kind: ``hr``, ``beats``, ``contact``, ``energy``, ``battery``,
        ``acc``, ``ecg``, ``ppi``, ``steps`` (only the kinds the batch produced).
    errors
        One :class:`~sensord.errors.DecodeError` per payload that could not be decoded;
        ``.index`` is its position in the batch. The other payloads are still decoded.
    info
        Static values (device information strings, body sensor location), last one wins.
    messages
        JSON-able records of non-sample payloads (e.g. PMD control-point responses), each
        with its batch ``index``.
    context
        Knowledge gained for decoding later batches (e.g. PMD scale factors); pass it as
        ``context=`` when decoding the data characteristic of the same device.
    n_decoded
        Number of payloads decoded without error.
    """

    streams: dict[str, Any] = field(default_factory=dict)
    errors: list[DecodeError] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    context: DecodeContext = field(default_factory=DecodeContext)
    n_decoded: int = 0


def decode_error(
    reason: str, *, profile: str, characteristic: str, payload: bytes, index: int | None = None
) -> DecodeError:
    """Build a :class:`DecodeError` (a shorthand that keeps call sites short)."""
    return DecodeError(
        reason, profile=profile, characteristic=characteristic, payload=payload, index=index
    )
