"""Wall/monotonic anchoring and clock-step repair. Pure: arrays in, arrays out; no clock reads.

A Raspberry Pi has no real-time clock: it boots with a stale wall clock and steps it when
NTP synchronises. Every record carries both the host wall clock (``wall_ns``) and the
monotonic clock (``mono_ns``, never steps, restarts at boot). Within one boot the offset
``wall_ns - mono_ns`` is constant up to slewing (ppm); a jump in it is a clock step.

Repair rule: within each boot, records are re-timed as ``mono_ns + offset`` where ``offset``
is the offset of the *last* segment of that boot (the clock is stepped towards the truth,
so the newest setting is the best one), unless a segment is known synchronised, in which
case the last synchronised segment's offset is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.model import EPOCH_NS

I64 = npt.NDArray[np.int64]

STEP_THRESHOLD_NS = 1_000_000_000
"""Offset changes larger than this (1 s) are steps; smaller ones are NTP slewing."""


@dataclass(frozen=True, slots=True)
class ClockSegments:
    """Records split where the clock stepped or the host rebooted.

    ``starts`` are indices of each segment's first record; ``offsets_ns`` their median
    ``wall - mono``; ``boot`` the boot number of each segment (increments when ``mono_ns``
    goes backwards).
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
    ends = np.append(starts[1:], wall.size)
    offsets = np.array(
        [int(np.median(offset[s:e])) for s, e in zip(starts, ends, strict=True)],
        dtype=np.int64,
    )
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
