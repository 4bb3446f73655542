"""Session log (``.blelog``): the append-only source of truth of a recording.

Format (version 1, described in full in ``docs/blelog.md``)
-----------------------------------------------------------
A ``.blelog`` file is a sequence of gzip members (RFC 1952). Every writer session
(daemon start, reopen after a crash) appends a new member whose gzip header carries a
fixed 32-byte marker (an ``FEXTRA`` sub-field ``Sd``), so a reader finds member starts
even after a member that was cut off by a power failure. Inside, each member is UTF-8
text, one record per line::

    <crc32:8 hex> <type:1> <wall_ns:19 digits> <mono_ns:19 digits> <rest>

``crc32`` covers everything after the first 9 bytes of the line. Types:

* ``H`` header (rest: JSON: format version, sensord version, participant, tz, host),
* ``K`` channel declaration (rest: JSON ``{"ch", "device", "char"}``),
* ``N`` notification (rest: ``<ch:8 hex> <payload hex>``),
* ``E`` device event (rest: JSON ``{"device", "kind", "detail"}``),
* ``C`` clock event (rest: JSON ``{"step_ns", "synced"}``).

A channel id is the CRC-32 of ``device + "\\t" + char_uuid``: self-describing, the
same in every member, so one surviving ``K`` line anywhere names it. The writer
sync-flushes the deflate stream every ``sync_interval_s`` of event time (everything
before a power cut up to the last flush is decodable) and full-flushes every
``full_flush_interval_s`` (a resync point after corrupt compressed bytes).

A corrupt line (CRC mismatch, malformed fields), a truncated tail, corrupt compressed
bytes or junk after a member are counted in a :class:`Problems` tally, reported once
with file and line (first occurrence), and skipped; everything else is kept.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import logging
import mmap
import os
import re
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from sensord import __version__
from sensord.errors import LogFormatError
from sensord.model import ClockEvent, DeviceEvent, RawNotification, SessionEvent

log = logging.getLogger(__name__)

FORMAT_NAME = "sensord.blelog"
FORMAT_VERSION = 1
"""Bumped on any incompatible change; readers refuse versions they do not know."""

SUFFIX = ".blelog"

_MARKER_DATA = b"sensord.blelog\x00\x01"  # 16 bytes: name + NUL + marker layout version
MEMBER_MARKER = (
    b"\x1f\x8b\x08\x04"  # gzip magic, deflate, FLG=FEXTRA
    + b"\x00\x00\x00\x00"  # MTIME 0 (reproducible)
    + b"\x00\xff"  # XFL, OS unknown
    + (4 + len(_MARKER_DATA)).to_bytes(2, "little")  # XLEN
    + b"Sd"
    + len(_MARKER_DATA).to_bytes(2, "little")
    + _MARKER_DATA
)
"""The 32-byte gzip header that starts every member."""

_PREFIX = 51  # "cccccccc T wwwwwwwwwwwwwwwwwww mmmmmmmmmmmmmmmmmmm " up to <rest>
_N_PREFIX = 60  # notification: prefix + "hhhhhhhh " then payload hex
_MAX_NS = 2**63
_READ_CHUNK = 1 << 16  # compressed bytes per step when streaming
_BATCH_CHUNK = 1 << 18  # ... when loading whole files (about 0.9 MB of text per piece)
_BATCH_RESYNC = 1 << 24  # ... and where it looks for a resync point (its former chunk)
_DEVICE_RE = re.compile(r"^[^\t\n\r]{1,200}$")
_PENDING_MAX = 1 << 16  # uncompressed bytes the writer collects before deflating them
_crc32 = zlib.crc32
_hexlify = binascii.hexlify
_unhexlify = binascii.unhexlify


def _sync_data(fd: int) -> None:
    """Make a file's written bytes durable: ``fdatasync`` where the OS has it (Linux).

    An appended file's new bytes and its new size reach the disk either way; fdatasync
    skips the timestamps that fsync writes too (on the bench's ext4 about a quarter of the
    log's fsync CPU time; see docs/daemon.md).
    """
    sync = getattr(os, "fdatasync", None)
    (sync if sync is not None else os.fsync)(fd)


def _sync_dir(path: Path) -> None:
    """fsync a directory, so a file just created in it survives a power cut (its entry)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def channel_id(device: str, char_uuid: str) -> str:
    """The 8-hex-digit channel id of a (device, characteristic) pair."""
    return format(zlib.crc32((device + "\t" + char_uuid).encode()), "08x")


@dataclass(frozen=True, slots=True)
class LogHeader:
    """The first record of each writer session.

    Attributes
    ----------
    format_version
        Session-log format version (:data:`FORMAT_VERSION` when written).
    sensord_version
        Version of the sensord that wrote the session.
    participant
        Participant (pseudonym) id.
    tz
        IANA time-zone name of the participant (``Europe/Zurich``), for night labels.
    host
        Host name of the recorder.
    wall_ns, mono_ns
        Clocks when the session started.
    extra
        Further keys (simulator seed, profile, ...), kept verbatim.
    """

    format_version: int
    sensord_version: str
    participant: str
    tz: str
    host: str
    wall_ns: int = 0
    mono_ns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Problem:
    """One kind of problem: where it first happened and how often."""

    kind: str
    path: str
    line: int | None
    message: str
    count: int = 1

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line is not None else "")
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"{where}: {self.kind}: {self.message}{times}"


class Problems:
    """Tally of skipped input; each (kind, key) is logged once, at its first occurrence."""

    def __init__(self, *, log_first: bool = True) -> None:
        self._by_key: dict[tuple[str, str], Problem] = {}
        self._log_first = log_first  # False: a tally to be merged into one that logs

    def add(
        self,
        kind: str,
        path: str,
        line: int | None,
        message: str,
        *,
        key: str = "",
        count: int = 1,
    ) -> None:
        """Count ``count`` occurrences of a problem; the first one is logged."""
        k = (kind, key)
        p = self._by_key.get(k)
        if p is None:
            p = Problem(kind, path, line, message, count)
            self._by_key[k] = p
            if self._log_first:
                log.warning("%s", p)
        else:
            p.count += count

    def merge(self, other: Problems) -> None:
        """Add ``other``'s tally, in its order (as if its problems were added here)."""
        for (kind, key), p in other._by_key.items():
            self.add(kind, p.path, p.line, p.message, key=key, count=p.count)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def total(self, kind: str | None = None) -> int:
        """Number of occurrences (of one ``kind`` or of all)."""
        return sum(p.count for p in self._by_key.values() if kind is None or p.kind == kind)

    def as_list(self) -> list[dict[str, Any]]:
        return [
            {"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "count": p.count}
            for p in self._by_key.values()
        ]


# --------------------------------------------------------------------------- writer


def _check_ns(name: str, value: int) -> int:
    v = int(value)
    if not 0 <= v < _MAX_NS:
        raise LogFormatError(f"{name}={value} outside 0..2**63 ns")
    return v


def _line(kind: str, wall_ns: int, mono_ns: int, rest: str) -> bytes:
    body = (
        f"{kind} {_check_ns('wall_ns', wall_ns):019d} {_check_ns('mono_ns', mono_ns):019d} {rest}"
    ).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, sort_keys=True)


class BlelogWriter:
    """Appends one writer session (a new gzip member) to a ``.blelog`` file.

    Parameters
    ----------
    path
        The log file; created if missing, appended to otherwise (never truncated).
    participant, tz, host
        Header fields (participant pseudonym, IANA zone name, recorder host).
    wall_ns, mono_ns
        Clock readings for the header record (the caller owns the clock).
    sync_interval_s
        Sync-flush into the file when an event is this much event time (monotonic) after
        the last flush: bounds what a crash of the process (SIGKILL) can lose.
    fsync_interval_s
        With ``fsync``: fsync at a sync flush only when this much event time has passed
        since the last fsync (``None``: at every sync flush); bounds what a power cut can
        lose. Device and clock events are always flushed and fsync'd at once.
    full_flush_interval_s
        Full flush (deflate dictionary reset: a resync point for readers) interval.
    fsync
        Make the bytes durable at every sync flush (daemon: yes; simulator and tests: no):
        ``os.fdatasync`` of the file, and once ``os.fsync`` of its directory when the
        writer created the file.
    extra
        Extra header keys.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        participant: str,
        tz: str,
        host: str,
        wall_ns: int,
        mono_ns: int,
        sync_interval_s: float = 1.0,
        fsync_interval_s: float | None = None,
        full_flush_interval_s: float = 300.0,
        fsync: bool = True,
        level: int = 6,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        for name, value in (("participant", participant), ("tz", tz), ("host", host)):
            if not _DEVICE_RE.match(value):
                raise LogFormatError(f"header {name}={value!r} must be 1-200 chars, no tab/newline")
        created = not self.path.exists()
        self._fh: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115  (closed by close())
        self._z = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0
        self._fsync = fsync
        self._sync_ns = int(sync_interval_s * 1e9)
        self._fsync_ns = self._sync_ns if fsync_interval_s is None else int(fsync_interval_s * 1e9)
        self._last_fsync = mono_ns
        self._full_ns = int(full_flush_interval_s * 1e9)
        self._last_sync = mono_ns
        self._last_full = mono_ns
        # the earliest event (monotonic) time that needs a flush: see _after
        self._next_flush_ns = min(mono_ns + self._full_ns, mono_ns + self._sync_ns)
        self._channels: dict[tuple[str, str], str] = {}
        self._ch_ascii: dict[tuple[str, str], bytes] = {}  # the same ids, encoded
        self._ch_owner: dict[str, tuple[str, str]] = {}
        self.records = 0
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._fh.write(MEMBER_MARKER)
        head = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "sensord": __version__,
            "participant": participant,
            "tz": tz,
            "host": host,
        }
        for k, v in (extra or {}).items():
            if k in head:
                raise LogFormatError(f"extra header key {k!r} clashes with a standard key")
            head[k] = v
        self._emit(_line("H", wall_ns, mono_ns, _json(head)))
        self.flush()
        if fsync and created:
            _sync_dir(self.path.parent)

    # -- public API

    def write(self, event: SessionEvent) -> None:
        """Append one event (notification, device event or clock event)."""
        if isinstance(event, RawNotification):
            self.write_notification(event.device, event.char_uuid, event.wall_ns,
                                    event.mono_ns, event.payload)
            return
        if isinstance(event, DeviceEvent):
            self._check_device(event.device)
            rest = _json({"device": event.device, "kind": event.kind, "detail": event.detail})
            self._emit(_line("E", event.wall_ns, event.mono_ns, rest))
        elif isinstance(event, ClockEvent):
            rest = _json({"step_ns": int(event.step_ns), "synced": bool(event.synced)})
            self._emit(_line("C", event.wall_ns, event.mono_ns, rest))
        else:
            raise LogFormatError(f"cannot log {type(event).__name__}", path=str(self.path))
        self._after(event.wall_ns, event.mono_ns, force_sync=True)

    __call__ = write

    def write_notification(
        self, device: str, char_uuid: str, wall_ns: int, mono_ns: int, payload: bytes
    ) -> None:
        """Append one notification (:meth:`write` without building the event object)."""
        ch = self._ch_ascii.get((device, char_uuid))
        if ch is None:
            ch = self._channel(device, char_uuid, wall_ns, mono_ns).encode()
        if not (0 <= wall_ns < _MAX_NS and 0 <= mono_ns < _MAX_NS):
            _check_ns("wall_ns", wall_ns)
            _check_ns("mono_ns", mono_ns)
        try:
            payload_hex = _hexlify(payload)
        except TypeError:  # not a buffer (e.g. a list of ints)
            payload_hex = _hexlify(bytes(payload))
        body = b"N %019d %019d %s %s" % (wall_ns, mono_ns, ch, payload_hex)
        line = b"%08x %s\n" % (_crc32(body), body)
        self._emit(line)
        if mono_ns >= self._next_flush_ns:  # _after only when a flush may be due
            self._after(wall_ns, mono_ns, force_sync=False)

    def _after(self, wall_ns: int, mono_ns: int, *, force_sync: bool) -> None:
        if mono_ns - self._last_full >= self._full_ns:
            self._redeclare(wall_ns, mono_ns)
            self._flush(zlib.Z_FULL_FLUSH)
            self._last_full = self._last_sync = self._last_fsync = mono_ns
        elif force_sync or mono_ns - self._last_sync >= self._sync_ns:
            sync_disk = force_sync or mono_ns - self._last_fsync >= self._fsync_ns
            self._flush(zlib.Z_SYNC_FLUSH, sync_disk=sync_disk)
            self._last_sync = mono_ns
            if sync_disk:
                self._last_fsync = mono_ns
        self._next_flush_ns = min(self._last_full + self._full_ns, self._last_sync + self._sync_ns)

    def flush(self) -> None:
        """Make everything written so far decodable from disk (sync flush + fsync)."""
        self._flush(zlib.Z_SYNC_FLUSH)

    def close(self) -> None:
        """Finish the gzip member (trailer with CRC-32 and size) and close the file."""
        if self._fh is None:
            return
        self._compress_pending()
        self._fh.write(self._z.flush(zlib.Z_FINISH))
        trailer = self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        self._fh.write(trailer)
        self._fh.flush()
        if self._fsync:
            _sync_data(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def __enter__(self) -> BlelogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    def _check_device(self, device: str) -> None:
        if not _DEVICE_RE.match(device):
            raise LogFormatError(
                f"device id {device!r} must be 1-200 chars without tab/newline", path=str(self.path)
            )

    def _channel(self, device: str, char_uuid: str, wall_ns: int, mono_ns: int) -> str:
        key = (device, char_uuid)
        ch = self._channels.get(key)
        if ch is None:
            self._check_device(device)
            if not _DEVICE_RE.match(char_uuid) or " " in char_uuid:
                raise LogFormatError(f"bad characteristic {char_uuid!r}", path=str(self.path))
            ch = channel_id(device, char_uuid)
            if ch in self._ch_owner:
                raise LogFormatError(
                    f"channel id collision {ch} for {key} and {self._ch_owner[ch]}",
                    path=str(self.path),
                )
            self._channels[key] = ch
            self._ch_ascii[key] = ch.encode()
            self._ch_owner[ch] = key
            self._declare(ch, key, wall_ns, mono_ns)
        return ch

    def _declare(self, ch: str, key: tuple[str, str], wall_ns: int, mono_ns: int) -> None:
        rest = _json({"ch": ch, "device": key[0], "char": key[1]})
        self._emit(_line("K", wall_ns, mono_ns, rest))

    def _redeclare(self, wall_ns: int, mono_ns: int) -> None:
        for key, ch in self._channels.items():
            self._declare(ch, key, wall_ns, mono_ns)

    def _emit(self, data: bytes) -> None:
        if self._fh is None:
            raise LogFormatError("write after close", path=str(self.path))
        self._pending.append(data)
        self._pending_len += len(data)
        self.records += 1
        if self._pending_len >= _PENDING_MAX:
            self._compress_pending()

    def _compress_pending(self) -> None:
        assert self._fh is not None
        block = b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        out = self._z.compress(block)
        if out:
            self._fh.write(out)

    def _flush(self, mode: int, *, sync_disk: bool = True) -> None:
        if self._fh is None:
            return
        self._compress_pending()
        self._fh.write(self._z.flush(mode))
        self._fh.flush()
        if self._fsync and sync_disk:
            _sync_data(self._fh.fileno())


# --------------------------------------------------------------------------- reader


def _member_offsets(buf: bytes | mmap.mmap) -> list[int]:
    offs = []
    pos = buf.find(MEMBER_MARKER, 0)
    while pos >= 0:
        offs.append(pos)
        pos = buf.find(MEMBER_MARKER, pos + len(MEMBER_MARKER))
    return offs


def _inflate_region(
    region: memoryview, start: int, path: str, problems: Problems, member: int,
    chunk_size: int = _READ_CHUNK, resync_block: int | None = None,
) -> Iterator[tuple[bytes, bool]]:
    """Decompress one member region chunk by chunk; yields (text chunk, is_last).

    On corrupt compressed data, resyncs at the next full-flush point (``00 00 ff ff``
    followed by a decodable raw deflate stream) after the start of the chunk, and reports
    the bytes skipped. ``resync_block``: look from the start of the block of that many
    bytes instead (the chunk of a decompression in larger chunks; the same recovery).
    """
    d = zlib.decompressobj(31)
    pos = 0
    n = len(region)
    raw = False
    origin = 0  # where decompression (re)started
    while pos < n:
        chunk = region[pos : pos + chunk_size]
        saved = d.copy()
        try:
            out = d.decompress(chunk)
        except zlib.error as exc:
            # Recover the text decodable before the bad byte, then look for a resync point.
            d = saved
            good: list[bytes] = []
            block = pos if resync_block is None else (
                origin + (pos - origin) // resync_block * resync_block)
            bad = start + block
            for k in range(0, len(chunk), 256):
                try:
                    good.append(d.decompress(chunk[k : k + 256]))
                except zlib.error:
                    bad = start + pos + k
                    break
            yield b"".join(good), False
            nxt = _resync(region, block + 1)
            problems.add(
                "corrupt-compressed",
                path,
                None,
                f"member {member} at byte {bad}: {exc}; "
                + (f"resynced at byte {start + nxt}" if nxt >= 0 else "rest of member skipped"),
                key=f"{member}:{bad}",
            )
            yield b"\n", False  # whatever line was in progress is cut off
            if nxt < 0:
                return
            d = zlib.decompressobj(-15)
            raw = True
            pos = origin = nxt
            continue
        if d.eof:
            consumed = len(chunk) - len(d.unused_data)
            yield out, True
            rest = bytes(region[pos + consumed + (8 if raw else 0) :])
            if rest.strip(b"\x00"):
                problems.add(
                    "junk-after-member", path, None,
                    f"{len(rest)} bytes after member {member} ignored",
                    key=f"{member}",
                )
            elif not raw and rest:
                problems.add(
                    "junk-after-member", path, None,
                    f"{len(rest)} zero bytes after member {member} ignored",
                    key=f"{member}",
                )
            return
        pos += len(chunk)
        yield out, False
    tail = d.flush()
    yield tail, False
    # Reaching here means the member never ended: cut off (power failure, copy in progress).


def _resync(region: memoryview, start: int) -> int:
    """Offset of the next full-flush point after ``start`` from which raw inflate works."""
    data = bytes(region)
    pos = data.find(b"\x00\x00\xff\xff", start)
    while pos >= 0:
        cand = pos + 4
        d = zlib.decompressobj(-15)
        try:
            d.decompress(data[cand : cand + 65536])
            return cand
        except zlib.error:
            pos = data.find(b"\x00\x00\xff\xff", pos + 1)
    return -1


@contextlib.contextmanager
def _mapped_members(
    path: str, problems: Problems
) -> Iterator[tuple[memoryview, list[tuple[int, int, int]]]]:
    """Map a log read-only; give its view and each member's (index, start byte, end byte).

    Raises :class:`LogFormatError` for an unreadable or empty file or one without a member
    header; bytes before the first member are reported as ``junk-before-member``.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise LogFormatError(f"cannot read: {exc.strerror}", path=path) from exc
    if size == 0:
        raise LogFormatError("empty file, not a session log", path=path)
    with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        offs = _member_offsets(mm)
        if not offs:
            raise LogFormatError("not a sensord session log (no blelog member header)", path=path)
        if offs[0] > 0:
            problems.add("junk-before-member", path, None,
                         f"{offs[0]} bytes before the first member ignored")
        spans = [(i, start, offs[i + 1] if i + 1 < len(offs) else size)
                 for i, start in enumerate(offs)]
        view = memoryview(mm)
        try:
            yield view, spans
        finally:
            view.release()


def _report_truncated_member(problems: Problems, path: str, i: int, start: int) -> None:
    problems.add(
        "truncated-member", path, None,
        f"member {i} (byte {start}) was cut off; kept what was flushed",
        key=str(i),
    )


def _members(path: str, problems: Problems) -> Iterator[tuple[int, Generator[bytes]]]:
    """Each member's index and its text as it is decompressed, a piece at a time (used by
    the batch loader); a member cut off is reported once its pieces are exhausted."""
    with _mapped_members(path, problems) as (view, spans):
        for i, start, end in spans:

            def texts(i: int = i, start: int = start, end: int = end) -> Generator[bytes]:
                complete = False
                for out, last in _inflate_region(view[start:end], start, path, problems, i,
                                                 chunk_size=_BATCH_CHUNK,
                                                 resync_block=_BATCH_RESYNC):
                    if out:
                        yield out
                    complete = complete or last
                if not complete:
                    _report_truncated_member(problems, path, i, start)

            yield i, texts()


def _parse_rest_json(rest: bytes) -> dict[str, Any]:
    obj = json.loads(rest)
    if not isinstance(obj, dict):
        raise ValueError("record body is not a JSON object")
    return obj


def _header_from(
    obj: dict[str, Any], wall_ns: int, mono_ns: int, path: str, line: int
) -> LogHeader:
    if obj.get("format") != FORMAT_NAME:
        raise LogFormatError(f"header format {obj.get('format')!r} is not {FORMAT_NAME}",
                             path=path, line=line)
    version = obj.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise LogFormatError(
            f"session-log format version {version!r} is not supported (this sensord reads "
            f"up to {FORMAT_VERSION}); upgrade sensord", path=path, line=line)
    std = {"format", "version", "sensord", "participant", "tz", "host"}
    return LogHeader(
        format_version=version,
        sensord_version=str(obj.get("sensord", "")),
        participant=str(obj.get("participant", "")),
        tz=str(obj.get("tz", "")),
        host=str(obj.get("host", "")),
        wall_ns=wall_ns,
        mono_ns=mono_ns,
        extra={k: v for k, v in obj.items() if k not in std},
    )


@dataclass(slots=True)
class _LineParser:
    """Record-by-record parsing with channel bookkeeping (the streaming path)."""

    path: str
    problems: Problems
    channels: dict[str, tuple[str, str]] = field(default_factory=dict)
    headers: list[LogHeader] = field(default_factory=list)
    pending: dict[str, list[tuple[int, int, int, bytes]]] = field(default_factory=dict)
    declared_rests: set[bytes] = field(default_factory=set)

    def parse(self, line: bytes, lineno: int) -> list[tuple[int, SessionEvent]]:
        """Events from one line (a notification on a channel not yet declared waits)."""
        if len(line) < _PREFIX or line[8:9] != b" " or line[10:11] != b" ":
            self.problems.add("corrupt-line", self.path, lineno, "line too short or malformed")
            return []
        try:
            stored = int(line[:8], 16)
        except ValueError:
            stored = -1
        if zlib.crc32(line[9:]) != stored:
            self.problems.add("corrupt-line", self.path, lineno, "CRC mismatch")
            return []
        kind = line[9:10]
        try:
            wall = int(line[11:30])
            mono = int(line[31:50])
            rest = line[_PREFIX:]
            if kind == b"N":
                ch = rest[:8].decode("ascii")
                payload = bytes.fromhex(rest[9:].decode("ascii"))
                key = self.channels.get(ch)
                if key is None:
                    self.pending.setdefault(ch, []).append((lineno, wall, mono, payload))
                    return []
                return [(lineno, RawNotification(key[0], key[1], wall, mono, payload))]
            obj = _parse_rest_json(rest)
            if kind == b"E":
                return [(lineno, DeviceEvent(str(obj["device"]), str(obj["kind"]), wall, mono,
                                             str(obj.get("detail", ""))))]
            if kind == b"C":
                return [(lineno, ClockEvent(wall, mono, int(obj["step_ns"]), bool(obj["synced"])))]
            if kind == b"K":
                ch = str(obj["ch"])
                key = (str(obj["device"]), str(obj["char"]))
                if channel_id(*key) != ch:
                    raise ValueError(f"channel id {ch} does not match {key}")
                self.channels[ch] = key
                waiting = self.pending.pop(ch, [])
                return [(ln, RawNotification(key[0], key[1], w, m, p)) for ln, w, m, p in waiting]
            if kind == b"H":
                self.headers.append(_header_from(obj, wall, mono, self.path, lineno))
                return []
            raise ValueError(f"unknown record type {kind!r}")
        except LogFormatError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.problems.add("corrupt-line", self.path, lineno, f"bad record: {exc}")
            return []

    def finish(self) -> None:
        for ch, waiting in self.pending.items():
            self.problems.add(
                "undeclared-channel", self.path, waiting[0][0],
                f"{len(waiting)} notifications on channel {ch} never declared; skipped",
                key=ch, count=len(waiting),
            )
        self.pending.clear()


def _iter_member_lines(
    path: str, problems: Problems
) -> Iterator[tuple[int, bytes]]:
    """(line number, line) over all members, streaming; truncated tails reported."""
    lineno = 0
    with _mapped_members(path, problems) as (view, spans):
        for i, start, end in spans:
            carry = b""
            complete = False
            for out, last in _inflate_region(view[start:end], start, path, problems, i):
                complete = complete or last
                if not out:
                    continue
                lines = (carry + out).split(b"\n")
                carry = lines.pop()
                for ln in lines:
                    lineno += 1
                    if ln:
                        yield lineno, ln
            if carry:
                lineno += 1
                problems.add("truncated-tail", path, lineno,
                             f"last record of member {i} cut off ({len(carry)} bytes); skipped",
                             key=str(i))
            if not complete:
                _report_truncated_member(problems, path, i, start)


def read_header(path: str | os.PathLike[str]) -> LogHeader:
    """The header of the first writer session of a log (reads only the first line)."""
    p = str(path)
    problems = Problems()
    parser = _LineParser(p, problems)
    for lineno, line in _iter_member_lines(p, problems):
        parser.parse(line, lineno)
        if parser.headers:
            return parser.headers[0]
        break
    raise LogFormatError("first record is not a valid header", path=p, line=1)


def iter_records(
    path: str | os.PathLike[str], problems: Problems | None = None
) -> Iterator[tuple[int, SessionEvent]]:
    """Stream ``(line number, event)`` of every record of a log, in file order.

    Notifications whose channel declaration comes later (the declaration line was
    damaged and a later copy survives) are delivered when it appears, with their own
    line numbers. Problems are counted in ``problems`` and skipped.
    """
    p = str(path)
    probs = problems if problems is not None else Problems()
    parser = _LineParser(p, probs)
    first = True
    for lineno, line in _iter_member_lines(p, probs):
        events = parser.parse(line, lineno)
        if first:
            if not parser.headers:
                raise LogFormatError("first record is not a valid header", path=p, line=lineno)
            first = False
        yield from events
    if first:
        raise LogFormatError("no complete record: the log was cut off before its header",
                             path=p, line=1)
    parser.finish()


def iter_events(
    path: str | os.PathLike[str], problems: Problems | None = None
) -> Iterator[SessionEvent]:
    """Stream every event of a log record by record (see :func:`iter_records`)."""
    for _, ev in iter_records(path, problems):
        yield ev


def iter_headers(path: str | os.PathLike[str]) -> list[LogHeader]:
    """Headers of every writer session in the log (one per member)."""
    p = str(path)
    probs = Problems()
    parser = _LineParser(p, probs)
    for lineno, line in _iter_member_lines(p, probs):
        if line[9:10] == b"H":
            parser.parse(line, lineno)
    return parser.headers


# --------------------------------------------------------------------------- batch load


@dataclass(slots=True)
class Channel:
    """All notifications of one (device, characteristic) pair, in file order.

    ``line`` holds each notification's line number (for problem reports).
    """

    device: str
    char_uuid: str
    wall_ns: npt.NDArray[np.int64]
    mono_ns: npt.NDArray[np.int64]
    payloads: list[bytes]
    line: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass(slots=True)
class LogContents:
    """A whole log loaded at once: headers, events and notifications per channel."""

    path: str
    headers: list[LogHeader]
    device_events: list[tuple[int, DeviceEvent]]  # (line, event)
    clock_events: list[tuple[int, ClockEvent]]
    channels: dict[tuple[str, str], Channel]
    lines: int
    members: int

    @property
    def header(self) -> LogHeader:
        return self.headers[0]


_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)
_HEXVAL = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEXVAL[_c] = _i
_POW16 = 16 ** np.arange(7, -1, -1, dtype=np.int64)


def _digits(block: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    d = block.astype(np.int64) - 48
    ok: npt.NDArray[np.bool_] = np.asarray(((d >= 0) & (d <= 9)).all(axis=1))
    return np.asarray(d @ _POW10, dtype=np.int64), ok


def _hex8(block: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    v = _HEXVAL[block]
    ok: npt.NDArray[np.bool_] = np.asarray((v >= 0).all(axis=1))
    return np.asarray(v @ _POW16, dtype=np.int64), ok




def load(path: str | os.PathLike[str], problems: Problems | None = None) -> LogContents:
    """Load a whole log into per-channel columns (vectorised; the fast path).

    Equivalent to collecting :func:`iter_events` (same events, same problems), but
    CRCs, clocks and channel ids are checked and parsed for all lines at once.
    """
    p = str(path)
    probs = problems if problems is not None else Problems()
    parser = _LineParser(p, probs)
    dev_events: list[tuple[int, DeviceEvent]] = []
    clk_events: list[tuple[int, ClockEvent]] = []
    # per channel id: lists of arrays / payload lists
    acc: dict[str, tuple[list[Any], list[Any], list[Any], list[bytes]]] = {}
    line_base = 0
    n_members = 0
    for index, texts in _members(p, probs):
        n_members += 1
        # The member is parsed a piece at a time as it is decompressed (its whole lines;
        # the rest is carried into the next piece): its text is never held whole. Its line
        # problems are tallied apart and added after those found decompressing it (corrupt
        # data, a member or last record cut off), in the order of a parse of its whole text.
        line_probs = Problems(log_first=False)
        parser.problems = line_probs
        carry = b""
        n = 0
        try:
            for part in texts:
                text = carry + part if carry else part
                nl = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
                if nl.size:
                    _load_lines(text, nl, line_base + n, parser, line_probs, p, dev_events,
                                clk_events, acc)
                    n += int(nl.size)
                    carry = text[int(nl[-1]) + 1 :]
                else:
                    carry = text
                del text, nl
            if carry:
                probs.add("truncated-tail", p, line_base + n + 1,
                          f"last record of member {index} cut off ({len(carry)} bytes); "
                          "skipped", key=str(index))
        finally:
            texts.close()  # (on an error: let go of the mapped file before it is closed)
            parser.problems = probs
            probs.merge(line_probs)
        line_base += n + (1 if carry else 0)
        if n_members == 1 and not parser.headers:
            raise LogFormatError("first record is not a valid header", path=p, line=1)
    if not parser.headers:
        raise LogFormatError("no complete record: the log was cut off before its header",
                             path=p, line=1)
    parser.pending.clear()  # the batch path resolves channels over the whole file below
    channels: dict[tuple[str, str], Channel] = {}
    for ch, (walls, monos, lns, pays) in acc.items():
        key = parser.channels.get(ch)
        if key is None:
            probs.add("undeclared-channel", p, int(lns[0][0]),
                      f"{len(pays)} notifications on channel {ch} never declared; skipped",
                      key=ch, count=len(pays))
            continue
        channels[key] = Channel(
            key[0], key[1], np.concatenate(walls), np.concatenate(monos), pays,
            np.concatenate(lns),
        )
    return LogContents(p, parser.headers, dev_events, clk_events, channels, line_base, n_members)


def _load_lines(
    text: bytes,
    nl: npt.NDArray[np.intp],
    line_base: int,
    parser: _LineParser,
    probs: Problems,
    path: str,
    dev_events: list[tuple[int, DeviceEvent]],
    clk_events: list[tuple[int, ClockEvent]],
    acc: dict[str, tuple[list[Any], list[Any], list[Any], list[bytes]]],
) -> None:
    """Parse the whole lines of one member's text (``nl``: positions of their newlines)."""
    n = int(nl.size)
    ends = nl.astype(np.int64)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts
    mv = memoryview(text)
    get = mv.__getitem__
    s_list = starts.tolist()
    # the fixed-width prefix of every line as an (n, 60) byte matrix (zero-padded after
    # the end of a short line)
    buf = np.frombuffer(text, dtype=np.uint8)
    cols = np.arange(_N_PREFIX, dtype=np.int64)
    pre = np.empty((n, _N_PREFIX), dtype=np.uint8)
    block = 8192  # lines at a time: the (block, 60) int64 index matrix stays at 4 MB
    for a in range(0, n, block):
        idx = starts[a : a + block, None] + cols
        np.take(buf, idx, out=pre[a : a + block], mode="clip")
        pre[a : a + block][idx >= ends[a : a + block, None]] = 0
    bodies = map(get, map(slice, (starts + 9).tolist(), ends.tolist()))
    crc_calc = np.fromiter(map(zlib.crc32, bodies), dtype=np.int64, count=n)
    crc_stored, crc_ok = _hex8(pre[:, 0:8])
    wall, wall_ok = _digits(pre[:, 11:30])
    mono, mono_ok = _digits(pre[:, 31:50])
    kind = pre[:, 9]
    sep_ok = (pre[:, 8] == 32) & (pre[:, 10] == 32) & (pre[:, 30] == 32) & (pre[:, 50] == 32)
    good = crc_ok & (crc_stored == crc_calc) & (lens >= _PREFIX) & sep_ok & wall_ok & mono_ok
    is_n = good & (kind == ord("N")) & (lens >= _N_PREFIX) & (pre[:, 59] == 32)
    chv, ch_ok = _hex8(pre[:, 51:59])
    is_n &= ch_ok

    def line_at(i: int) -> bytes:
        return bytes(mv[s_list[i] : int(ends[i])])

    lineno = np.arange(line_base + 1, line_base + n + 1, dtype=np.int64)
    # Channel declarations repeat (the writer re-declares at every full flush): a valid
    # declaration whose text was already seen needs no parsing.
    rest_seen = parser.declared_rests
    is_k = np.flatnonzero(good & (kind == ord("K")))
    repeat_k = np.zeros(n, dtype=bool)
    for i in is_k.tolist():
        rest = bytes(mv[s_list[i] + _PREFIX : int(ends[i])])
        if rest in rest_seen:
            repeat_k[i] = True
        else:
            rest_seen.add(rest)
    # Everything else that is not a well-formed notification goes through the slow
    # parser: headers, first declarations, events and every bad line (which it reports).
    for i in np.flatnonzero(~is_n & ~repeat_k).tolist():
        for _, ev in parser.parse(line_at(i), line_base + i + 1):
            if isinstance(ev, DeviceEvent):
                dev_events.append((line_base + i + 1, ev))
            elif isinstance(ev, ClockEvent):
                clk_events.append((line_base + i + 1, ev))
            elif kind[i] == ord("N"):  # a CRC-valid notification the fast path could not lay out
                slot = acc.setdefault(channel_id(ev.device, ev.char_uuid), ([], [], [], []))
                slot[0].append(np.array([ev.wall_ns], dtype=np.int64))
                slot[1].append(np.array([ev.mono_ns], dtype=np.int64))
                slot[2].append(np.array([line_base + i + 1], dtype=np.int64))
                slot[3].append(ev.payload)
    idx_n = np.flatnonzero(is_n)
    if idx_n.size == 0:
        return
    chv_n = chv[idx_n]
    order = np.argsort(chv_n, kind="stable")
    sorted_ch = chv_n[order]
    firsts = np.r_[0, np.flatnonzero(np.diff(sorted_ch)) + 1]
    uniq = sorted_ch[firsts]
    bounds = np.append(firsts, order.size)
    for j, ch_int in enumerate(uniq.tolist()):
        sel = idx_n[order[bounds[j] : bounds[j + 1]]]
        sel_list = sel.tolist()
        hexes = map(get, map(slice, (starts[sel] + _N_PREFIX).tolist(), ends[sel].tolist()))
        try:
            # unhexlify takes the bytes as they are (no str made first): on well-formed
            # hex it gives what bytes.fromhex gives; on anything else (spaces, non-ASCII,
            # odd length) it raises and each line is decoded as the streaming path does
            pays = list(map(_unhexlify, hexes))
        except ValueError:  # (binascii.Error is one)
            pays = []
            keep = []
            for k in sel_list:
                try:
                    pays.append(bytes.fromhex(line_at(k)[_N_PREFIX:].decode("ascii")))
                    keep.append(k)
                except (ValueError, UnicodeDecodeError):
                    probs.add("corrupt-line", path, line_base + k + 1, "bad payload hex")
            sel = np.asarray(keep, dtype=np.int64)
        ch = f"{ch_int:08x}"
        slot = acc.setdefault(ch, ([], [], [], []))
        slot[0].append(wall[sel])
        slot[1].append(mono[sel])
        slot[2].append(lineno[sel])
        slot[3].extend(pays)
