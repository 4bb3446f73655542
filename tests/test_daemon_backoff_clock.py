"""Pure pieces of the daemon: the backoff policy and clock-step repair (hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from sensord.backoff import BackoffPolicy
from sensord.clock import epoch_coverage, find_segments, repair_wall_ns
from sensord.model import EPOCH_NS

S = 1_000_000_000


def test_backoff_doubles_from_min_and_is_capped() -> None:
    p = BackoffPolicy(min_s=1.0, max_s=60.0, factor=2.0, jitter=0.0)
    assert [p.delay_s(n, 0.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert p.delay_s(10_000, 0.0) == 60  # no overflow on a night-long outage


def test_backoff_jitter_only_shortens_within_its_fraction() -> None:
    p = BackoffPolicy(min_s=2.0, max_s=30.0, factor=2.0, jitter=0.3)
    # u = 0 gives the full step; u -> 1 gives (1 - 0.3) of it: 8 s -> 5.6 s at attempt 2.
    assert p.delay_s(2, 0.0) == 8.0
    assert p.delay_s(2, 0.5) == pytest.approx(8.0 * 0.85)
    us = np.linspace(0, 0.999, 50)
    delays = [p.delay_s(n, float(u)) for n in range(12) for u in us]
    assert max(delays) <= 30.0 and min(delays) >= 2.0 * 0.7


@pytest.mark.parametrize(
    "kwargs", [dict(min_s=0), dict(min_s=5, max_s=1), dict(factor=0.5), dict(jitter=1.0)]
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_a_two_hour_step_at_the_start_is_repaired_from_the_monotonic_clock() -> None:
    # Boot with a stale wall clock; 5 min later NTP steps it forward by exactly 2 h.
    mono = np.arange(0, 3600 * S, 10 * S, dtype=np.int64) + 500 * S
    true_wall = mono + 1_760_000_000 * S
    wall = true_wall.copy()
    before_sync = mono < 800 * S
    wall[before_sync] -= 7200 * S
    seg = find_segments(wall, mono)
    assert seg.starts.tolist() == [0, int(np.argmax(~before_sync))]
    assert (seg.offsets_ns[1] - seg.offsets_ns[0]) == 7200 * S
    repaired = repair_wall_ns(wall, mono)
    assert np.array_equal(repaired, true_wall)


def test_slewing_is_kept_and_reboots_are_separate() -> None:
    mono1 = np.arange(0, 100 * S, S, dtype=np.int64)
    wall1 = mono1 + 1000 * S + np.arange(100) * 1000  # 1 us/s slew: not a step
    mono2 = np.arange(0, 50 * S, S, dtype=np.int64)  # reboot: monotonic restarts
    wall2 = mono2 + 5000 * S
    wall = np.concatenate([wall1, wall2])
    mono = np.concatenate([mono1, mono2])
    seg = find_segments(wall, mono)
    assert seg.starts.tolist() == [0, 100] and seg.boot.tolist() == [0, 1]
    assert np.array_equal(repair_wall_ns(wall, mono), wall)


def test_synced_segment_wins_over_a_later_unsynced_one() -> None:
    mono = np.arange(0, 30 * S, S, dtype=np.int64)
    wall = mono + 100 * S
    wall[20:] += 3600 * S  # a bogus later step while unsynchronised
    synced = np.zeros(30, dtype=bool)
    synced[:20] = True
    out = repair_wall_ns(wall, mono, synced=synced)
    assert np.array_equal(out, mono + 100 * S)


def test_epoch_coverage_counts_records_per_aligned_epoch() -> None:
    start = 1_760_000_000 * S // EPOCH_NS * EPOCH_NS + 10 * S
    t = np.array([start, start + 5 * S, start + 70 * S], dtype=np.int64)
    epochs, counts = epoch_coverage(t, start, start + 100 * S)
    assert epochs[0] == start - 10 * S and np.all(epochs % EPOCH_NS == 0)
    # Epochs [-10,20), [20,50), [50,80), [80,110): 2, 0, 1, 0
    assert counts.tolist() == [2, 0, 1, 0]
