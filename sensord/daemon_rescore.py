"""The daemon's end-of-night re-score, as its scoring worker process runs it.

A module of its own so that the worker (started with ``spawn`` for each night) imports
only the log reader, the staging core and the store's point builder: not the radio,
the sinks or the daemon (some 12 MB less resident; :mod:`sensord.daemon` uses it too).
Touches the disk (reads the night's logs) and the C allocator, as the daemon does.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sensord.pipeline import load_session
from sensord.staging.core import score_night
from sensord.store.nightpoints import night_points


def malloc_trim() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``: hand freed heap pages back to the OS (no-op elsewhere).

    A night of decode batches, pickled scoring jobs and JSON status writes frees memory in
    several threads' malloc arenas; without trimming, the resident set creeps up by megabytes
    over a night although the Python heap does not grow.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None

    def release() -> None:
        trim(0)

    return release


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
SCORING_MMAP_THRESHOLD_BYTES = 1 << 20
"""In the scoring worker, from decoding on, blocks this large or larger are mapped on their
own (glibc ``M_MMAP_THRESHOLD``): each is handed back to the OS whole when freed."""
SCORING_TRIM_THRESHOLD_BYTES = 4 << 20
"""... and free memory at the top of the heap is handed back once it exceeds this
(glibc ``M_TRIM_THRESHOLD``)."""


def fix_mmap_threshold(size_bytes: int, trim_bytes: int = SCORING_TRIM_THRESHOLD_BYTES
                       ) -> bool:
    """Fix glibc's mmap threshold at ``size_bytes`` and its trim threshold at ``trim_bytes``
    (whether they could be set).

    glibc raises the mmap threshold to the size of every mapped block that is freed: once a
    log's 22.6 MB of text is freed, every decode batch comes from the heap, and when the
    batches are joined into the night's arrays the heap keeps their pages although they
    are free. Fixed at 1 MiB, the batches are mapped and unmapped instead (scoring worker,
    8-h bench night: peak 149 -> 139 MB at the same CPU time; 128 KiB cost 50 % more CPU
    in page faults). Fixing it also stops glibc from adapting the trim threshold, which
    then stays at 128 KiB: with the acceleration counted piece by piece as it is decoded,
    the top of the heap was handed back and faulted in again over and over (63,000-95,000
    page faults a night, depending on the heap's layout; 45,000-52,000 when the night's
    samples were held). At 4 MiB: 58,000-68,000 at the same peak, 80-83 MB (8, 16, 32 and
    64 MiB gave no fewer faults and 1-2 MB more).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, size_bytes))
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes)) and ok
    except (OSError, AttributeError):
        return False


def rescore_logs(
    paths: list[Path], *, participant: str, tz: str, roles: dict[str, str],
    own_process: bool = False,
) -> tuple[bytes, list[str], dict[str, Any] | None, dict[str, list[Any]]]:
    """The night's final result, from its session log(s) alone (the source of truth).

    The logs are loaded and decoded by :func:`sensord.pipeline.load_session` (vectorised;
    the same streams as the live :class:`sensord.pipeline.Pipeline`), every record re-timed
    first with :func:`sensord.clock.repair_wall_ns` (clock steps repaired from the
    monotonic record, as :class:`sensord.daemon.ClockWatch` does live), scored with
    :func:`sensord.staging.core.score_night`, and turned into the store's points by
    :func:`sensord.store.nightpoints.night_points` (samples, device events, coverage, final
    epochs, features, night summary). Idempotent: the same log gives the same points,
    which overwrite the live ones; ``sensord backfill`` of the log gives them too.

    The acceleration is counted as it is decoded (``load_session(count_acc=True)``: the
    same counts, its samples never held at once; 8-h bench night at 50 Hz: peak 118.5 ->
    about 82 MB); a night where that cannot be done exactly is loaded again keeping them.

    Freed heap pages go back to the OS (glibc ``malloc_trim``) once the logs are read and
    once they are decoded: the log's text and the decode temporaries leave holes the
    allocator keeps otherwise (8-h bench night: peak 161 -> 149 MB, 123 -> 74 MB after
    decoding). With ``own_process`` (the daemon's scoring worker, which exits after the
    night) glibc's mmap threshold is also fixed from decoding on
    (:func:`fix_mmap_threshold`).
    """
    release = malloc_trim()

    def after_read() -> None:
        release()
        if own_process:  # a process-wide setting: only in a worker of its own
            fix_mmap_threshold(SCORING_MMAP_THRESHOLD_BYTES)

    session = load_session(paths, after_read=after_read, count_acc=True)
    release()
    return night_points(session, participant=participant, tz=tz, roles=roles,
                        score=score_night)
