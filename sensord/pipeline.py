"""The one path every event takes: session log first, then batch decoding into streams.

The live daemon and replay both feed :class:`Pipeline`; ``sensord score LOG`` and the
demo use :func:`load_streams`, which runs the same decoding step
(:func:`decode_channel`) on whole channels read by the vectorised log loader.

::

    transport --SessionEvent--> Pipeline.feed --> BlelogWriter.write   (source of truth)
                                              \\-> per-channel batch --> decode_channel
                                                                      --> DeviceStreams

Typical use
-----------
Live (daemon)::

    pipe = Pipeline(writer=BlelogWriter(path, ...))
    conn = await transport.connect("strap", address, pipe.feed, timeout_s=20)
    ...
    pipe.decode_pending()              # decode what is buffered (e.g. every epoch)
    night = pipe.night()               # NightStreams for the staging core

Offline::

    night, report = load_streams(["night.blelog"])
    print(report.format())
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord import blelog, devices
from sensord.blelog import BlelogWriter, Problems
from sensord.clock import repair_wall_ns
from sensord.devices import DecodeContext
from sensord.devices.polar_pmd import PMD_CONTROL_POINT
from sensord.errors import ControlPointError
from sensord.model import (
    AccCounts,
    AccStream,
    AccTimes,
    BeatStream,
    ClockEvent,
    ContactStream,
    CountStream,
    DeviceEvent,
    HeartRateStream,
    NightStreams,
    RawNotification,
    SessionEvent,
)
from sensord.staging.core import AccCounter
from sensord.staging.epochs import epoch_grid

GAP_MIN_S = 10.0
"""A stream has a gap where consecutive samples are further apart than
``max(GAP_MIN_S, GAP_FACTOR * median sample interval)``."""
GAP_FACTOR = 10.0

DEFAULT_BATCH = 4096
"""Notifications of one channel decoded together (about an hour of heart rate)."""

Locate = Callable[[], tuple[str, int | None]]


# --------------------------------------------------------------------------- streams


def _concat_streams(parts: list[Any], room: _Room | None = None) -> Any:
    """Concatenate dataclass streams of one type field by field, sorted by ``t_ns``.

    Each part (one decoded batch) is sorted already; neighbouring batches may overlap
    by a few ms (each batch maps device time to host time on its own), so only the
    samples in such an overlap are reordered (stable), in O(n).

    Each entry of ``parts`` is set to ``None`` once copied, so that a night of 50-Hz
    acceleration is held once and one part, not twice (where the parts are mapped blocks
    the allocator returns at once; see :func:`sensord.daemon_rescore.fix_mmap_threshold`).
    Two small parts in time order (live: the rolling buffer and the batch decoded at a
    tick; :data:`_SMALL_JOIN`) are joined field by field (:func:`_append`, in the
    ``room`` of a rolling buffer if given), which gives the same arrays.
    """
    if len(parts) == 1:
        return parts[0]
    kind = type(parts[0])
    fields = _field_names(kind)
    if len(parts) == 2:  # live: the buffer and one new batch, most often in order
        a, b = parts
        ta, tb = a.t_ns, b.t_ns
        # small joins only: a night's parts go the old way, one part let go at a time
        if len(ta) and len(tb) and ta[-1] <= tb[0] and len(ta) + len(tb) <= _SMALL_JOIN:
            parts[0] = parts[1] = None
            return _append(a, b, room)
    values: dict[str, Any] = {}
    for name in fields:
        vals = [getattr(p, name) for p in parts]
        values[name] = (np.empty((sum(len(v) for v in vals), *vals[0].shape[1:]),
                                 dtype=np.result_type(*{v.dtype for v in vals}))
                        if isinstance(vals[0], np.ndarray) else vals[0])
        del vals
    arrays = [n for n in fields if isinstance(values[n], np.ndarray)]
    sizes = np.array([len(p.t_ns) for p in parts]) if "t_ns" in arrays else None
    at = dict.fromkeys(arrays, 0)
    for i in range(len(parts)):
        part, parts[i] = parts[i], None
        for n in arrays:
            v = getattr(part, n)
            values[n][at[n] : at[n] + len(v)] = v
            at[n] += len(v)
            del v
        del part
    t = values.get("t_ns")
    if isinstance(t, np.ndarray) and sizes is not None:
        bounds = np.cumsum(sizes)[:-1]
        bounds = bounds[(bounds > 0) & (bounds < t.size)]
        bad = bounds[t[bounds] < t[bounds - 1]]
        cols = [n for n in fields if isinstance(values[n], np.ndarray)
                and values[n].shape[:1] == t.shape]
        for b in bad.tolist():
            lo, hi, order = _overlap(t[:b], t[b:])
            for n in cols:
                values[n][lo : b + hi] = values[n][lo + order]
    return kind(**values)


@dataclass(slots=True)
class _Room:
    """A rolling buffer's stream as :func:`_append` last joined it (``None``: none yet),
    and the arrays whose first rows its array fields are, with room after them."""

    stream: Any = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


_ROOM_BATCHES = 10
"""Batches of the size just joined that a rolling buffer's arrays get room for when they
are made anew: in the daemon, the ten 30-s batches until its next trim (which makes new
arrays), 480 kB of 50-Hz acceleration. With room for 4 (two new arrays per trim) the
acceleration's joins took 0.072-0.083 CPU-s a bench night, with 10 0.050-0.052, without
room 0.125-0.138."""


def _append(a: Any, b: Any, room: _Room | None) -> Any:
    """``a`` and then ``b`` (streams of one type), field by field: the arrays
    ``np.concatenate`` gives. Given a ``room``, they are written after ``a``'s rows into
    the arrays ``a`` was joined in where there is room (``a`` is ``room.stream``), or
    into new arrays with room for more, so that a rolling buffer is not copied whole at
    every tick; rows already handed out are never written.
    """
    before = room.arrays if room is not None and a is room.stream else {}
    spare = 0 if room is None else _ROOM_BATCHES
    values: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in _field_names(type(a)):
        va, vb = getattr(a, name), getattr(b, name)
        if not isinstance(va, np.ndarray):
            values[name] = va
            continue
        if not (isinstance(vb, np.ndarray) and vb.dtype == va.dtype
                and vb.shape[1:] == va.shape[1:]):
            values[name] = np.concatenate((va, vb))  # (its casts and errors)
            continue
        n_a, n = len(va), len(va) + len(vb)
        out = before.get(name)  # (a's arrays are its first rows: same dtype and shape)
        if out is None or out.shape[0] < n:
            out = np.empty((max(n, min(n + spare * len(vb), _SMALL_JOIN)), *va.shape[1:]),
                           dtype=va.dtype)
            out[:n_a] = va
        out[n_a:n] = vb
        arrays[name] = out
        values[name] = out if out.shape[0] == n else out[:n]
    joined = type(a)(**values)
    if room is not None:
        room.stream, room.arrays = joined, arrays
    return joined


def _live_where(count: int) -> tuple[str, int]:
    """Where a live event is: its running number in the session (no file, no line)."""
    return "<live>", count


_SMALL_JOIN = 1 << 17
"""Samples up to which two in-order parts are joined at once (a rolling buffer: 15 min of
50-Hz acceleration is 45,000); larger joins (the scoring worker's night) free each part
once copied, so that the night is not held twice."""

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    """The field names of a stream dataclass (looked up once per type)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def _overlap(before: npt.NDArray[np.int64], after: npt.NDArray[np.int64]
             ) -> tuple[int, int, npt.NDArray[np.intp]]:
    """Where ``after`` begins before ``before`` ends: the samples that interleave,
    ``before[lo:]`` and ``after[:hi]``, and the order by time (stable) of the two joined."""
    lo = int(np.searchsorted(before, after[0], side="right"))
    hi = int(np.searchsorted(after, before[-1], side="left"))
    return lo, hi, np.argsort(np.concatenate((before[lo:], after[:hi])), kind="stable")


_COUNT_PIECE = 1 << 14
"""Samples counted at a time while decoding (the counts do not depend on it)."""


class _CountedAcc:
    """A device's acceleration counted batch by batch as it is decoded
    (``load_session(count_acc=True)``): each batch goes to a
    :class:`sensord.staging.core.AccCounter` in the order :func:`_concat_streams` will join
    the batches' times.

    The newest batch waits for the next: where that one begins before it ends, the
    samples in the overlap are reordered as :func:`_concat_streams` reorders them. That
    gives its order only where each overlap lies within the two batches around it and no
    later batch reaches back before an earlier overlap; otherwise counting stops
    (``counter.exact`` false) and the caller counts the whole stream.
    """

    def __init__(self) -> None:
        self.counter = AccCounter()
        self._pending: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None
        self._floor: int | None = None  # the latest end of a batch another overlapped

    def add(self, part: AccStream) -> None:
        """Count one decoded batch (or queue it until the next arrives)."""
        t = np.asarray(part.t_ns, dtype=np.int64)
        a = np.asarray(part.acc_g)
        if not self.counter.exact:
            return
        if (t.size > 1 and not bool(np.all(t[1:] >= t[:-1]))) or (
                self._floor is not None and int(t[0]) < self._floor):
            self._stop()
            return
        if self._pending is None:
            self._pending = (t, a)
            return
        pt, pa = self._pending
        if t[0] >= pt[-1]:
            self._feed(pt, pa)
            self._pending = (t, a)
            return
        lo, hi, order = _overlap(pt, t)
        if lo == 0 or hi >= t.size:  # the overlap may reach beyond these two batches
            self._stop()
            return
        self._floor = max(self._floor or int(pt[-1]), int(pt[-1]))
        self._feed(pt[:lo], pa[:lo])
        self._feed(np.concatenate((pt[lo:], t[:hi]))[order],
                   np.concatenate((pa[lo:], a[:hi]))[order])
        self._pending = (t[hi:], a[hi:])

    def _feed(self, t: npt.NDArray[np.int64], a: npt.NDArray[Any]) -> None:
        for lo in range(0, t.size, _COUNT_PIECE):  # bounded intermediates, the same counts
            self.counter.feed(t[lo : lo + _COUNT_PIECE], a[lo : lo + _COUNT_PIECE])

    def _stop(self) -> None:
        self.counter.exact = False
        self._pending = None

    def finish(self) -> AccCounter:
        """Count the last batch; the counter, ready for its ``result``."""
        if self._pending is not None:
            self._feed(*self._pending)
            self._pending = None
        return self.counter


@dataclass(slots=True)
class DeviceStreams:
    """Decoded streams of one device, by stream name (``hr``, ``beats``, ``acc``, ...).

    ``notifications`` counts notifications received per characteristic UUID; ``info``
    holds static values (device information strings); ``messages`` control-point
    records.
    """

    device: str
    streams: dict[str, Any] = field(default_factory=dict)
    notifications: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _parts: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    counted_acc: _CountedAcc | None = field(default=None, repr=False)
    """Set: acceleration is counted as decoded; ``acc`` keeps only its times (AccTimes)."""
    _rooms: dict[str, _Room] = field(default_factory=dict, init=False, repr=False)
    """Per stream, the arrays it was last joined in by :meth:`get` (:func:`_append`)."""

    def _add(self, name: str, stream: Any) -> None:
        if len(stream) == 0:
            return
        if name == "acc" and self.counted_acc is not None and isinstance(stream, AccStream):
            self.counted_acc.add(stream)
            stream = AccTimes(stream.t_ns)
        self._parts.setdefault(name, []).append(stream)
        self.streams.pop(name, None)

    def get(self, name: str) -> Any:
        """The stream called ``name`` (all batches joined, sorted by time) or ``None``."""
        if name not in self.streams and name in self._parts:
            room = self._rooms.setdefault(name, _Room())
            self.streams[name] = _concat_streams(self._parts[name], room)
            self._parts[name] = [self.streams[name]]
        return self.streams.get(name)

    def names(self) -> list[str]:
        return sorted(self._parts)


CONTEXT_CHARS = frozenset({PMD_CONTROL_POINT})
"""Characteristics decoded one notification at a time, at once: what they teach (e.g. the
PMD scale factor in a start response) is context for decoding the device's data."""


@dataclass(slots=True)
class _Device:
    streams: DeviceStreams
    context: DecodeContext = field(default_factory=DecodeContext)


def decode_channel(
    device: str,
    char_uuid: str,
    payloads: Sequence[bytes],
    wall_ns: np.ndarray,
    *,
    out: DeviceStreams,
    context: DecodeContext,
    problems: Problems,
    where: Callable[[int], tuple[str, int | None]],
) -> DecodeContext:
    """Decode one batch of one channel into ``out`` (the step live, replay and load share).

    Returns the device's decode context updated by what the batch taught. Notifications
    that fail to decode are counted in ``problems`` (once per device and characteristic,
    with the file and line of the first) and skipped.
    """
    out.notifications[char_uuid] = out.notifications.get(char_uuid, 0) + len(payloads)
    if not payloads:
        return context
    result = devices.decode_batch(char_uuid, payloads, np.asarray(wall_ns, dtype=np.int64),
                                  context=context)
    for name, stream in result.streams.items():
        out._add(name, stream)
    out.info.update(result.info)
    for msg in result.messages:
        out.messages.append(msg)
    for err in result.errors:
        idx = err.index if err.index is not None else 0
        path, line = where(idx)
        kind = "control-point-error" if isinstance(err, ControlPointError) else "decode-error"
        problems.add(kind, path, line, f"{device}: {err}", key=f"{device}\t{char_uuid}")
    return result.context


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What one stream of one device holds.

    ``coverage`` is the fraction of the session span ``[start_ns, end_ns]`` not inside a
    gap (leading and trailing absence count as gaps); ``gaps`` lists ``(start_ns,
    end_ns)`` of every interval without samples longer than the gap threshold.
    """

    device: str
    name: str
    samples: int
    first_ns: int
    last_ns: int
    coverage: float
    gaps: tuple[tuple[int, int], ...]


def _stream_report(device: str, name: str, t_ns: np.ndarray, start_ns: int, end_ns: int
                   ) -> StreamReport:
    t = np.asarray(t_ns, dtype=np.int64)
    span = max(end_ns - start_ns, 1)
    # median interval from at most ~100k intervals (streams can hold 10^7 samples)
    k = max(1, t.size // 100_000)
    sub = t[: (t.size // k) * k].reshape(-1, k)
    med = float(np.median(np.diff(sub[:, :2], axis=1))) if k > 1 else (
        float(np.median(np.diff(t))) if t.size > 1 else 0.0)
    thr = max(GAP_MIN_S * 1e9, GAP_FACTOR * med)
    gaps: list[tuple[int, int]] = []
    if t[0] - start_ns > thr:
        gaps.append((start_ns, int(t[0])))
    # a gap between neighbours shows as a gap between every k-th sample around it: search
    # the thinned times, then look inside the few blocks that qualify
    step = 64 if t.size > 1_000_000 else 1
    pos = np.arange(0, t.size, step)
    if pos[-1] != t.size - 1:
        pos = np.r_[pos, t.size - 1]
    blocks = np.flatnonzero(np.diff(t[pos]) > thr)
    idx_parts = [pos[b] + np.flatnonzero(np.diff(t[pos[b] : pos[b + 1] + 1]) > thr)
                 for b in blocks.tolist()]
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64)
    gaps.extend((int(t[i]), int(t[i + 1])) for i in idx.tolist())
    if end_ns - t[-1] > thr:
        gaps.append((int(t[-1]), end_ns))
    missing = sum(b - a for a, b in gaps)
    return StreamReport(device, name, int(t.size), int(t[0]), int(t[-1]),
                        max(0.0, 1.0 - missing / span), tuple(gaps))


def _fmt_ns(t_ns: int) -> str:
    return np.datetime64(int(t_ns), "ns").astype("datetime64[s]").astype(str) + "Z"


def _fmt_dur(ns: int) -> str:
    s = round(ns / 1e9)
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"


@dataclass(slots=True)
class LoadReport:
    """Devices, streams, sample counts, coverage, gaps and counted problems of a session."""

    sources: list[str]
    start_ns: int
    end_ns: int
    devices: dict[str, DeviceStreams]
    streams: list[StreamReport]
    problems: Problems
    device_events: list[DeviceEvent]
    clock_events: list[ClockEvent]
    headers: list[blelog.LogHeader]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sources": self.sources,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "devices": {
                d: {"notifications": ds.notifications, "streams": ds.names()}
                for d, ds in self.devices.items()
            },
            "streams": [
                {"device": s.device, "stream": s.name, "samples": s.samples,
                 "first_ns": s.first_ns, "last_ns": s.last_ns,
                 "coverage": round(s.coverage, 4),
                 "gaps": [list(g) for g in s.gaps]}
                for s in self.streams
            ],
            "device_events": len(self.device_events),
            "clock_events": len(self.clock_events),
            "problems": self.problems.as_list(),
        }

    def format(self) -> str:
        """Human-readable multi-line summary."""
        out = [f"session: {', '.join(self.sources)}"]
        if self.headers:
            h = self.headers[0]
            out.append(f"participant {h.participant}, tz {h.tz}, host {h.host}, "
                       f"format v{h.format_version}, written by sensord {h.sensord_version}")
        if self.end_ns > self.start_ns:
            out.append(f"span: {_fmt_ns(self.start_ns)} .. {_fmt_ns(self.end_ns)} "
                       f"({_fmt_dur(self.end_ns - self.start_ns)})")
        out.append(f"devices: {len(self.devices)}")
        for d, ds in self.devices.items():
            n = sum(ds.notifications.values())
            out.append(f"  {d}: {n} notifications on {len(ds.notifications)} characteristics")
        out.append("streams:")
        for s in self.streams:
            out.append(f"  {s.device}/{s.name}: {s.samples} samples, coverage "
                       f"{100 * s.coverage:.1f}%, {len(s.gaps)} gaps")
            for a, b in s.gaps[:5]:
                out.append(f"    gap {_fmt_ns(a)} .. {_fmt_ns(b)} ({_fmt_dur(b - a)})")
            if len(s.gaps) > 5:
                out.append(f"    ... {len(s.gaps) - 5} more gaps")
        kinds: dict[str, int] = {}
        for e in self.device_events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        if kinds:
            out.append("device events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        if self.clock_events:
            out.append(f"clock events: {len(self.clock_events)}")
        probs = list(self.problems)
        out.append(f"problems: {self.problems.total()}")
        out.extend(f"  {p}" for p in probs)
        return "\n".join(out)


# --------------------------------------------------------------------------- night


_NIGHT_KINDS: dict[str, Any] = {
    "hr": HeartRateStream, "beats": BeatStream, "acc": AccStream, "counts": CountStream,
}


def build_night(devs: dict[str, DeviceStreams], start_ns: int, end_ns: int) -> NightStreams:
    """One night of streams for the staging core.

    For each of ``hr``, ``beats``, ``acc``, ``counts`` the device with the most samples of
    that kind is used; ``off_body_t_ns`` are the times any device reported lost skin
    contact (Heart Rate Measurement contact bits, where supported).
    """
    night = NightStreams(start_ns=start_ns, end_ns=end_ns)
    for name, cls in _NIGHT_KINDS.items():
        setattr(night, name, _most_samples(devs, name, cls)[1])
    # off body: the device says its sensor lost skin contact (only where it can tell)
    offs = []
    for ds in devs.values():
        c = ds.get("contact")
        if isinstance(c, ContactStream) and len(c):
            offs.append(c.t_ns[~c.contact])
    if offs:
        night.off_body_t_ns = np.sort(np.concatenate(offs)).astype(np.int64)
    return night


def _most_samples(devs: dict[str, DeviceStreams], name: str, cls: Any
                  ) -> tuple[DeviceStreams | None, Any]:
    """The device whose stream ``name`` (of type ``cls``) has the most samples (the first
    such device on a tie) and that stream; ``(None, None)`` if none has one."""
    best: Any = None
    best_ds = None
    for ds in devs.values():
        s = ds.get(name)
        if isinstance(s, cls) and len(s) and (best is None or len(s) > len(best)):
            best, best_ds = s, ds
    return best_ds, best


def _counted_acc(devs: dict[str, DeviceStreams], night: NightStreams) -> bool:
    """Give ``night`` the counts of the acceleration counted as decoded (of the device
    :func:`build_night` would take it from); whether they are the exact counts (or none
    are needed: no counted acceleration, or the night has device counts)."""
    ds, times = _most_samples(devs, "acc", AccTimes)
    if ds is None or ds.counted_acc is None or night.counts is not None:
        return True
    grid = epoch_grid(night.start_ns, night.end_ns)
    result = ds.counted_acc.finish().result(grid, times.t_ns)
    if result is None:
        return False
    night.acc_counts = AccCounts(*result)
    return True


def _report(
    sources: list[str],
    devs: dict[str, DeviceStreams],
    problems: Problems,
    dev_events: list[DeviceEvent],
    clk_events: list[ClockEvent],
    headers: list[blelog.LogHeader],
    span: tuple[int, int] | None,
) -> LoadReport:
    start_ns, end_ns = span if span is not None else (0, 0)
    reports: list[StreamReport] = []
    for d, ds in devs.items():
        for name in ds.names():
            s = ds.get(name)
            t = getattr(s, "t_ns", None)
            if isinstance(t, np.ndarray) and t.size:
                reports.append(_stream_report(d, name, t, start_ns, end_ns))
    return LoadReport(sources, start_ns, end_ns, devs, reports, problems, dev_events,
                      clk_events, headers)


# --------------------------------------------------------------------------- live / replay


class Pipeline:
    """Session log first, then per-channel batch decoding: the daemon's and replay's sink.

    Each (device, characteristic) channel is decoded in batches of ``batch_size``
    notifications, cut early by a ``disconnected`` event of the device, by
    :meth:`decode_pending` and by :meth:`end_session`; characteristics in
    :data:`CONTEXT_CHARS` are decoded at once. :func:`load_session` cuts a log as a
    replay without :meth:`decode_pending` calls does, and gives the same streams.

    Where the cuts fall matters for some streams: heart rate, contact, battery and
    InfiniTime motion decode the same whatever the cuts, but RR beat times and Polar PMD
    sample times are reconstructed per batch from receive times, so they shift with the
    cuts (values and counts do not). The live daemon cuts every ``LIVE_BATCH``
    notifications and at every epoch tick, which a replay of its log does not repeat: its
    live beat and PMD times are provisional, and what is stored of them is re-derived from
    the log (docs/blelog.md gives the measured size of the shift).

    A device's notifications are decoded only after a :class:`~sensord.model.DeviceEvent`
    announced the device (the daemon feeds ``connected`` when it connects); others are
    counted as ``unknown-device`` and skipped, as are characteristics without a decoder.
    Decoded streams are in :attr:`devices`; notifications still buffered appear after the
    batch fills, the device disconnects, or :meth:`end_session`.

    Parameters
    ----------
    writer
        Where every event is logged before anything else happens (``None``: replay
        of an existing log, nothing to write).
    batch_size
        Notifications of one channel decoded together.
    locate
        Returns the (file, line) of the event being fed, for problem reports (replay);
        live events are located as ``<live>`` and their running number.
    problems
        Tally for skipped input (a new one by default).
    """

    def __init__(
        self,
        writer: BlelogWriter | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        locate: Locate | None = None,
        problems: Problems | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.writer = writer
        self.batch_size = batch_size
        self.locate = locate
        self.problems = problems if problems is not None else Problems()
        self.devices: dict[str, DeviceStreams] = {}
        self.device_events: list[DeviceEvent] = []
        self.clock_events: list[ClockEvent] = []
        self._state: dict[str, _Device] = {}
        self._known: set[str] = set()
        self._decodable: dict[str, bool] = {}  # characteristic -> has a decoder (cached)
        # per channel: payloads, wall times and where each came from (a running number
        # live, a (file, line) pair from ``locate``)
        self._buf: dict[tuple[str, str], tuple[list[bytes], list[int], list[Any]]] = {}
        self._count = 0
        self._span: list[int] = []

    def _where(self) -> tuple[str, int | None]:
        if self.locate is not None:
            return self.locate()
        return _live_where(self._count)

    def feed(self, event: SessionEvent) -> None:
        """Log, then buffer or decode one event (the transport's ``EventSink``)."""
        if isinstance(event, RawNotification):  # nearly every event: the short way
            if self.writer is not None:
                self.writer.write_notification(event.device, event.char_uuid, event.wall_ns,
                                               event.mono_ns, event.payload)
            self._count += 1
            self._notification(event)
            return
        if self.writer is not None:
            self.writer.write(event)
        self._count += 1
        if isinstance(event, DeviceEvent):
            dev = event.device
            self._known.add(dev)
            if dev not in self._state:
                self._state[dev] = _Device(DeviceStreams(dev))
                self.devices[dev] = self._state[dev].streams
            self.device_events.append(event)
            if event.kind == "disconnected":
                self._flush_device(dev)
        elif isinstance(event, ClockEvent):
            self.clock_events.append(event)

    __call__ = feed

    def _notification(self, event: RawNotification) -> None:
        key = (event.device, event.char_uuid)
        buf = self._buf.get(key)
        if buf is None:  # nothing buffered for this channel: check it first
            dev, char = key
            if dev not in self._known:
                path, line = self._where()
                self.problems.add("unknown-device", path, line,
                                  f"notification from {dev!r} before any event announcing it; "
                                  "skipped", key=dev)
                return
            ok = self._decodable.get(char)
            if ok is None:
                ok = self._decodable[char] = devices.is_known(char)
            if not ok:
                path, line = self._where()
                self.problems.add("unknown-characteristic", path, line,
                                  f"{dev}: no decoder for {char}; skipped", key=f"{dev}\t{char}")
                return
            buf = self._buf[key] = ([], [], [])
        span, w = self._span, event.wall_ns
        if not span:
            self._span = [w, w]
        elif w < span[0]:
            span[0] = w
        elif w > span[1]:
            span[1] = w
        payloads = buf[0]
        payloads.append(event.payload)
        buf[1].append(w)
        # live, where an event is is its running number: kept alone, made a pair if needed
        buf[2].append(self._count if self.locate is None else self.locate())
        if len(payloads) >= self.batch_size or key[1] in CONTEXT_CHARS:
            self._decode(*key)

    def _decode(self, dev: str, char: str) -> None:
        payloads, walls, wheres = self._buf.pop((dev, char))
        st = self._state[dev]

        def where(i: int) -> tuple[str, int | None]:
            w = wheres[min(i, len(wheres) - 1)]
            return _live_where(w) if isinstance(w, int) else w

        st.context = decode_channel(
            dev, char, payloads, np.asarray(walls, dtype=np.int64),
            out=st.streams, context=st.context, problems=self.problems, where=where,
        )

    def decode_pending(self) -> None:
        """Decode every buffered notification now (decode contexts carry on): the daemon
        calls this every epoch, so the rolling buffers are complete up to the tick."""
        for key in list(self._buf):
            self._decode(*key)

    def _flush_device(self, dev: str) -> None:
        for key in [k for k in self._buf if k[0] == dev]:
            self._decode(*key)

    def end_session(self) -> None:
        """End of a log or of the daemon's session: decode everything buffered, forget
        per-session state (decode contexts, which devices were announced)."""
        for dev in list(self._state):
            self._flush_device(dev)
            self._state[dev].context = DecodeContext()
        self._known.clear()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """:meth:`end_session`, then close the session log."""
        self.end_session()
        if self.writer is not None:
            self.writer.close()

    def night(self) -> NightStreams:
        """Everything decoded so far as one :class:`NightStreams` (see :func:`build_night`)."""
        start, end = self._span if self._span else (0, 0)
        return build_night(self.devices, start, end)

    def report(
        self, sources: list[str] | None = None, headers: list[blelog.LogHeader] | None = None
    ) -> LoadReport:
        """Devices, streams, counts, coverage, gaps and problems decoded so far."""
        span = (self._span[0], self._span[1]) if self._span else None
        return _report(sources or ["<live>"], self.devices, self.problems, self.device_events,
                       self.clock_events, headers or [], span)


# --------------------------------------------------------------------------- offline


@dataclass(slots=True)
class Session:
    """Streams of one or more session logs, decoded."""

    night: NightStreams
    report: LoadReport

    @property
    def devices(self) -> dict[str, DeviceStreams]:
        return self.report.devices


def _at_lines(path: str, lines: np.ndarray) -> Callable[[int], tuple[str, int | None]]:
    def where(i: int) -> tuple[str, int | None]:
        return path, int(lines[min(i, lines.size - 1)])

    return where


def _chunks(lines: np.ndarray, cuts: np.ndarray, batch: int) -> list[np.ndarray]:
    """Index arrays of the batches :class:`Pipeline` forms: ``batch`` at a time, restarting
    after every cut line (a ``disconnected`` event)."""
    seg = np.searchsorted(cuts, lines)
    out: list[np.ndarray] = []
    bounds = np.flatnonzero(np.diff(seg)) + 1
    for part in np.split(np.arange(lines.size), bounds):
        out.extend(part[i : i + batch] for i in range(0, part.size, batch))
    return out


def retime_logs(logs: Sequence[blelog.LogContents]) -> None:
    """Repair host clock steps in loaded logs, in place: every record's wall time becomes
    :func:`sensord.clock.repair_wall_ns` of all records of all logs in order (each log's
    records by line, the logs one after the other), as the daemon's live clock tracking
    does. A log without steps is left as it is."""
    parts = []  # (log, line, wall, mono) per block of records, in a fixed order
    for k, c in enumerate(logs):
        events: list[tuple[int, DeviceEvent | ClockEvent]] = [*c.device_events, *c.clock_events]
        parts.append((np.full(len(events), k), np.array([ln for ln, _ in events]),
                      np.array([e.wall_ns for _, e in events]),
                      np.array([e.mono_ns for _, e in events])))
        parts += [(np.full(len(ch), k), ch.line, ch.wall_ns, ch.mono_ns)
                  for ch in c.channels.values()]
    if not parts:
        return
    log_k, line, wall, mono = (np.concatenate([p[i] for p in parts]).astype(np.int64)
                               for i in range(4))
    if not wall.size:
        return
    order = np.lexsort((line, log_k))  # arrival order: the log, then the line within it
    shift = np.empty_like(wall)
    shift[order] = repair_wall_ns(wall[order], mono[order]) - wall[order]
    if not shift.any():
        return
    pos = 0
    for c in logs:
        n_dev, n_clk = len(c.device_events), len(c.clock_events)
        d = shift[pos : pos + n_dev + n_clk].tolist()
        pos += n_dev + n_clk
        c.device_events = [(ln, dataclasses.replace(ev, wall_ns=ev.wall_ns + dt))
                           for (ln, ev), dt in zip(c.device_events, d[:n_dev], strict=True)]
        c.clock_events = [(ln, dataclasses.replace(ev, wall_ns=ev.wall_ns + dt))
                          for (ln, ev), dt in zip(c.clock_events, d[n_dev:], strict=True)]
        for ch in c.channels.values():
            ch.wall_ns = ch.wall_ns + shift[pos : pos + len(ch)]
            pos += len(ch)


_KeptChannel = tuple[str, list[bytes], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _kept_channels(
    contents: blelog.LogContents, first_event_line: dict[str, int], path: str,
    probs: Problems,
) -> tuple[dict[str, list[_KeptChannel]], tuple[int, int] | None]:
    """The notifications the pipeline would keep, per device in the order it would see
    them (``(char, payloads, wall_ns, lines)``), and their wall-time span. Empties
    ``contents.channels``: each channel's payloads are let go once it is decoded."""
    never = np.iinfo(np.int64).max
    kept: dict[str, list[_KeptChannel]] = {}
    lo: int | None = None
    hi: int | None = None
    for (dev, char), ch in contents.channels.items():
        keep = ch.line > first_event_line.get(dev, never)
        if not keep.all():
            k = int(np.argmin(keep))
            probs.add("unknown-device", path, int(ch.line[k]),
                      f"notification from {dev!r} before any event announcing it; skipped",
                      key=dev, count=int((~keep).sum()))
        if not keep.any():
            continue
        if not devices.is_known(char):
            k = int(np.argmax(keep))
            probs.add("unknown-characteristic", path, int(ch.line[k]),
                      f"{dev}: no decoder for {char}; skipped", key=f"{dev}\t{char}",
                      count=int(keep.sum()))
            continue
        if keep.all():
            pays, wall, lines = ch.payloads, ch.wall_ns, ch.line
        else:
            idx = np.flatnonzero(keep)
            pays = [ch.payloads[i] for i in idx.tolist()]
            wall, lines = ch.wall_ns[idx], ch.line[idx]
        lo = int(wall.min()) if lo is None else min(lo, int(wall.min()))
        hi = int(wall.max()) if hi is None else max(hi, int(wall.max()))
        kept.setdefault(dev, []).append((char, pays, wall, lines))
    contents.channels.clear()
    return kept, (lo, hi) if lo is not None and hi is not None else None


def _decode_device(
    out: DeviceStreams, chans: list[_KeptChannel], cuts: list[int], path: str,
    batch_size: int, probs: Problems,
) -> None:
    """Decode one device's kept channels of one log into ``out``, emptying ``chans``."""
    dev = out.device
    # context timeline: context characteristics decoded one by one, in log order
    ctx_lines: list[int] = [0]
    ctx_values: list[DecodeContext] = [DecodeContext()]
    ctx_items = sorted(
        (int(lines[i]), char, pays[i], int(wall[i]))
        for char, pays, wall, lines in chans if char in CONTEXT_CHARS
        for i in range(len(pays))
    )
    for line, char, pay, w in ctx_items:
        ctx_values.append(decode_channel(
            dev, char, [pay], np.array([w], dtype=np.int64), out=out,
            context=ctx_values[-1], problems=probs,
            where=_at_lines(path, np.array([line], dtype=np.int64))))
        ctx_lines.append(line)
    cut = np.asarray(cuts, dtype=np.int64)
    while chans:
        char, pays, wall, lines = chans.pop(0)
        if char in CONTEXT_CHARS:
            continue
        for sel in _chunks(lines, cut, batch_size):
            last = int(lines[sel[-1]])
            ctx = ctx_values[bisect.bisect_left(ctx_lines, last) - 1]
            p_sel = pays if sel.size == len(pays) else pays[int(sel[0]) : int(sel[-1]) + 1]
            decode_channel(dev, char, p_sel, wall[sel], out=out, context=ctx,
                           problems=probs, where=_at_lines(path, lines[sel]))


def load_session(
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = DEFAULT_BATCH,
    problems: Problems | None = None,
    repair_clock: bool = True,
    after_read: Callable[[], None] | None = None,
    count_acc: bool = False,
) -> Session:
    """Load and decode session logs into per-device streams and a night (the fast path).

    Gives the same streams and problems as replaying each log through a
    :class:`Pipeline` with the same ``batch_size`` (ending the session after each log),
    but reads each log with the vectorised :func:`sensord.blelog.load`; with
    ``repair_clock`` (the default) the records are first re-timed by :func:`retime_logs`
    (host clock steps, e.g. a Raspberry Pi's NTP step after boot, repaired from the
    monotonic record), so that the CLI, the backfill and the daemon's end-of-night score
    give a log the same times.

    Parameters
    ----------
    paths
        One or more ``.blelog`` files (e.g. the pieces of one night).
    batch_size
        As for :class:`Pipeline`.
    problems
        Tally to add skipped input to (a new one by default).
    after_read
        Called once the logs are read, before decoding (the scoring worker hands the
        freed pages of the logs' text back to the OS there).
    count_acc
        Count the acceleration as it is decoded instead of keeping its samples (the
        scoring worker: a night at 50 Hz is 46 MB of samples). The devices' ``acc``
        streams then hold only their times (:class:`~sensord.model.AccTimes`) and
        ``night.acc_counts`` what :func:`sensord.staging.core.acc_counts` makes of the
        samples. Where that cannot be had exactly while decoding (overlapping batches
        reaching beyond their neighbours, samples to sort, drop or clip; see
        :class:`_CountedAcc`), the logs are loaded again without it.

    Returns
    -------
    Session
        ``night`` (:class:`~sensord.model.NightStreams`; span = first to last decodable
        notification) and ``report`` (:class:`LoadReport`, with ``devices``).
    """
    probs = problems if problems is not None else Problems()
    sources = [str(p) for p in paths]
    session = _load_session(sources, batch_size, probs, repair_clock, after_read, count_acc)
    if session is None:  # not countable as decoded: again, keeping the samples (the same
        # problems are found again: the report keeps the first tally)
        session = _load_session(sources, batch_size, Problems(), repair_clock, after_read,
                                False)
        assert session is not None
        session.report.problems = probs
    return session


def _load_session(
    sources: list[str], batch_size: int, probs: Problems, repair_clock: bool,
    after_read: Callable[[], None] | None, count_acc: bool,
) -> Session | None:
    """:func:`load_session`; ``None`` where ``count_acc`` could not count exactly."""
    devs: dict[str, DeviceStreams] = {}
    dev_events: list[DeviceEvent] = []
    clk_events: list[ClockEvent] = []
    headers: list[blelog.LogHeader] = []
    lo: int | None = None
    hi: int | None = None
    loaded = [blelog.load(path, probs) for path in sources]
    if repair_clock:
        retime_logs(loaded)
    if after_read is not None:
        after_read()
    for path, contents in zip(sources, loaded, strict=True):
        headers.extend(contents.headers)
        first_event_line: dict[str, int] = {}
        cuts: dict[str, list[int]] = {}
        for line, ev in contents.device_events:
            first_event_line.setdefault(ev.device, line)
            if ev.device not in devs:
                devs[ev.device] = DeviceStreams(
                    ev.device, counted_acc=_CountedAcc() if count_acc else None)
            dev_events.append(ev)
            if ev.kind == "disconnected":
                cuts.setdefault(ev.device, []).append(line)
        clk_events.extend(ev for _, ev in contents.clock_events)
        kept, span = _kept_channels(contents, first_event_line, path, probs)
        if span is not None:
            lo = span[0] if lo is None else min(lo, span[0])
            hi = span[1] if hi is None else max(hi, span[1])
        for dev, chans in kept.items():
            _decode_device(devs[dev], chans, cuts.get(dev, []), path, batch_size, probs)
        del kept
    span = (lo, hi) if lo is not None and hi is not None else None
    night = build_night(devs, *(span or (0, 0)))
    if count_acc and not _counted_acc(devs, night):
        return None
    report = _report(sources, devs, probs, dev_events, clk_events, headers, span)
    return Session(night, report)


def load_streams(
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = DEFAULT_BATCH,
    problems: Problems | None = None,
    repair_clock: bool = True,
) -> tuple[NightStreams, LoadReport]:
    """``(NightStreams, LoadReport)`` of session logs; see :func:`load_session`."""
    s = load_session(paths, batch_size=batch_size, problems=problems,
                     repair_clock=repair_clock)
    return s.night, s.report
