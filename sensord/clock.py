"""Time helpers. Pure: no clock reads.

Clock-step repair (area daemon) is at the end of this module.

Night assignment: a night is named by the local calendar date of the evening it starts
on, in the participant's IANA time zone. The "night day" runs from local noon to the next
local noon (``boundary_hour``), so a night spanning a DST change is 23 or 25 hours long
in UTC and is still one night. All instants are UTC ns (``int64``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from sensord.errors import ConfigError
from sensord.model import EPOCH_NS

NS_PER_S = 1_000_000_000
_UTC = dt.UTC


def zone(tz: str) -> ZoneInfo:
    """The IANA zone ``tz``; :class:`ConfigError` naming it if it does not exist."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown IANA time zone {tz!r}", key="tz") from exc


def to_local(t_ns: int, tz: str) -> dt.datetime:
    """Aware local datetime of the UTC instant ``t_ns`` (microsecond resolution)."""
    utc = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=int(t_ns) // 1000)
    return utc.astimezone(zone(tz))


def utc_offset_s(t_ns: int, tz: str) -> int:
    """Offset of local time from UTC at ``t_ns``, in seconds (e.g. 3600 for CET)."""
    off = to_local(t_ns, tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def local_ns(t_ns: npt.NDArray[np.int64], tz: str) -> npt.NDArray[np.int64]:
    """Local wall-clock time of each instant as ns since 1970-01-01 local midnight.

    Vectorised: offsets are looked up at the zone's transitions inside the span (found
    by bisection), not per sample, so a DST change mid-array is handled exactly.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    if t.size == 0:
        return t.copy()
    lo, hi = int(t.min()), int(t.max())
    cuts: list[int] = []
    offs: list[int] = [utc_offset_s(lo, tz)]
    a = lo
    while utc_offset_s(hi, tz) != offs[-1] and len(cuts) < 64:
        # bisect to the first instant (1-s resolution) after ``a`` with a different offset
        left, right = a, hi
        while right - left > NS_PER_S:
            mid = left + (right - left) // 2
            if utc_offset_s(mid, tz) == offs[-1]:
                left = mid
            else:
                right = mid
        cuts.append(right)
        offs.append(utc_offset_s(right, tz))
        a = right
    seg = np.searchsorted(np.asarray(cuts, dtype=np.int64), t, side="right")
    return t + np.asarray(offs, dtype=np.int64)[seg] * NS_PER_S


def night_of(t_ns: int, tz: str, *, boundary_hour: int = 12) -> dt.date:
    """The night an instant belongs to: the local date of the preceding ``boundary_hour``.

    ``night_of`` 23:30 and 03:00 the next morning both give the first evening's date.
    """
    local = to_local(t_ns, tz)
    return (local - dt.timedelta(hours=boundary_hour)).date()


def night_bounds(night: dt.date, tz: str, *, boundary_hour: int = 12) -> tuple[int, int]:
    """UTC ns ``[start, end)`` of a night: local ``boundary_hour`` on ``night`` to the same
    local hour the next day (23 h or 25 h long across a DST change)."""
    z = zone(tz)
    start = dt.datetime.combine(night, dt.time(boundary_hour), tzinfo=z)
    end = dt.datetime.combine(night + dt.timedelta(days=1), dt.time(boundary_hour), tzinfo=z)
    return _ns(start), _ns(end)


def _ns(d: dt.datetime) -> int:
    delta = d.astimezone(_UTC) - dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def local_iso(t_ns: int, tz: str) -> str:
    """ISO 8601 local time with its UTC offset, to the second (``2026-03-29T03:10:00+02:00``)."""
    return to_local(t_ns, tz).replace(microsecond=0).isoformat()

# --------------------------------------------------------------------------- clock steps
#
# Wall/monotonic anchoring and clock-step repair. Pure: arrays in, arrays out; no clock reads.
#
# A Raspberry Pi has no real-time clock: it boots with a stale wall clock and steps it when
# NTP synchronises. Every record carries both the host wall clock (``wall_ns``) and the
# monotonic clock (``mono_ns``, never steps, restarts at boot). Within one boot the offset
# ``wall_ns - mono_ns`` is constant up to slewing (ppm); a jump in it is a clock step.
#
# Repair rule: within each boot, records are re-timed as ``mono_ns + offset`` where ``offset``
# is the offset of the *last* segment of that boot (the clock is stepped towards the truth,
# so the newest setting is the best one), unless a segment is known synchronised, in which
# case the last synchronised segment's offset is used.

I64 = npt.NDArray[np.int64]

STEP_THRESHOLD_NS = 1_000_000_000
"""Offset changes larger than this (1 s) are steps; smaller ones are NTP slewing."""


@dataclass(frozen=True, slots=True)
class ClockSegments:
    """Records split where the clock stepped or the host rebooted.

    ``starts`` are indices of each segment's first record; ``offsets_ns`` the
    ``wall - mono`` of that first record; ``boot`` the boot number of each segment
    (increments when ``mono_ns`` goes backwards).
    """

    starts: I64
    offsets_ns: I64
    boot: I64


def find_segments(
    wall_ns: I64, mono_ns: I64, *, threshold_ns: int = STEP_THRESHOLD_NS
) -> ClockSegments:
    """Split records (in arrival order) into constant-offset segments.

    Parameters
    ----------
    wall_ns, mono_ns
        Host wall and monotonic clocks of each record, same length, arrival order.
    threshold_ns
        Smallest change of ``wall - mono`` between neighbours counted as a step.
    """
    wall = np.asarray(wall_ns, dtype=np.int64)
    mono = np.asarray(mono_ns, dtype=np.int64)
    if wall.shape != mono.shape or wall.ndim != 1:
        raise ValueError(f"wall_ns and mono_ns must be 1-D of equal length: {wall.shape}, "
                         f"{mono.shape}")
    if wall.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ClockSegments(empty, empty, empty)
    offset = wall - mono
    reboot = np.zeros(wall.size, dtype=bool)
    reboot[1:] = np.diff(mono) < 0
    step = np.zeros(wall.size, dtype=bool)
    step[1:] = np.abs(np.diff(offset)) > threshold_ns
    cut = reboot | step
    cut[0] = True
    starts = np.flatnonzero(cut).astype(np.int64)
    # The first record's offset: a live daemon, which sees records one at a time, reaches
    # exactly the same value, so live and log repairs agree to the nanosecond.
    offsets = offset[starts].astype(np.int64)
    boot = np.cumsum(reboot)[starts].astype(np.int64)
    return ClockSegments(starts, offsets, boot)


def repair_wall_ns(
    wall_ns: I64,
    mono_ns: I64,
    *,
    synced: npt.NDArray[np.bool_] | None = None,
    threshold_ns: int = STEP_THRESHOLD_NS,
) -> I64:
    """Re-time records so clock steps disappear (see the module docstring for the rule).

    Parameters
    ----------
    wall_ns, mono_ns
        Host clocks of each record (arrival order).
    synced
        Optional per-record flag: the system clock was NTP-synchronised at that record.
    threshold_ns
        Step threshold, as in :func:`find_segments`.

    Returns
    -------
    Repaired UTC ns, same length; unchanged where there was no step.
    """
    wall = np.asarray(wall_ns, dtype=np.int64)
    mono = np.asarray(mono_ns, dtype=np.int64)
    seg = find_segments(wall, mono, threshold_ns=threshold_ns)
    if wall.size == 0:
        return wall.copy()
    seg_of_record = np.searchsorted(seg.starts, np.arange(wall.size), side="right") - 1
    ref = np.empty(seg.starts.size, dtype=np.int64)
    for b in np.unique(seg.boot):
        in_boot = np.flatnonzero(seg.boot == b)
        chosen = in_boot[-1]
        if synced is not None:
            flags = np.asarray(synced, dtype=bool)
            good = [i for i in in_boot if flags[seg.starts[i]]]
            if good:
                chosen = good[-1]
        ref[in_boot] = seg.offsets_ns[chosen]
    # Keep slewing inside a segment: shift each segment by (reference - its own offset).
    shift = (ref - seg.offsets_ns)[seg_of_record]
    return wall + shift


def epoch_coverage(t_ns: I64, start_ns: int, end_ns: int) -> tuple[I64, I64]:
    """Records per 30-s epoch between ``start_ns`` and ``end_ns`` (epoch-aligned).

    Returns ``(epoch_start_ns, counts)``. Epochs with no record are the gaps that staging
    leaves unscored.
    """
    first = (start_ns // EPOCH_NS) * EPOCH_NS
    n = max(0, -(-(end_ns - first) // EPOCH_NS))
    epochs = first + EPOCH_NS * np.arange(n, dtype=np.int64)
    t = np.asarray(t_ns, dtype=np.int64)
    idx = (t - first) // EPOCH_NS
    idx = idx[(idx >= 0) & (idx < n)]
    counts = np.bincount(idx, minlength=n).astype(np.int64)
    return epochs, counts
