"""Time helpers. Pure: no clock reads.

Night assignment: a night is named by the local calendar date of the evening it starts
on, in the participant's IANA time zone. The "night day" runs from local noon to the next
local noon (``boundary_hour``), so a night spanning a DST change is 23 or 25 hours long
in UTC and is still one night. All instants are UTC ns (``int64``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from sensord.errors import ConfigError

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
