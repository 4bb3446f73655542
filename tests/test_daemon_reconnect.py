"""Reconnect, watchdog and backoff against bumble virtual wearables over TCP HCI links.

Time runs 60x faster (ScaledClock) for the daemon and the wearables alike, so "minutes"
of absence take seconds. Radio operations (connect) still take real time, which is why
bounds below are "backoff bound / speed + a real-time connect allowance".
"""

from __future__ import annotations

import asyncio

import numpy as np
from bumble_env import VirtualAirProc, virtual_air  # noqa: F401
from daemon_helpers import MemoryRecorder, hr_seq, wait_until

from sensord.backoff import BackoffPolicy
from sensord.ble.bumble_transport import BumbleTransport
from sensord.clock import epoch_coverage
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions
from sensord.model import EPOCH_NS
from sensord.timesource import ScaledClock

SPEED = 60.0
WALL0_NS = 1_760_000_000 * 10**9 // EPOCH_NS * EPOCH_NS  # epoch-aligned start
CONNECT_ALLOWANCE_S = 1.5  # real seconds for connect + discovery + subscribe on a busy CI box
POLICY = BackoffPolicy(min_s=2.0, max_s=30.0, factor=2.0, jitter=0.3)


class Spec:
    def __init__(self, name: str, address: str, profile: str) -> None:
        self.name, self.address, self.profile = name, address, profile


def make_daemon(air: VirtualAirProc, specs: list[Spec], rec: MemoryRecorder,
                watchdog_s: float = 60.0) -> tuple[Daemon, ScaledClock, BumbleTransport]:
    clock = ScaledClock(speed=SPEED, wall0_ns=WALL0_NS)
    transport = BumbleTransport(air.hci("central"), clock=clock)
    options = DaemonOptions(
        supervisor=SupervisorOptions(watchdog_s=watchdog_s, connect_timeout_s=1.0,
                                     backoff=POLICY, stable_after_s=30.0),
    )
    return Daemon(specs, transport, rec, clock=clock, options=options, seed=1), clock, transport


def contiguous_runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def test_device_that_disconnects_is_back_within_the_first_backoff_step(
    virtual_air: VirtualAirProc,  # noqa: F811
) -> None:
    strap = virtual_air.start("chest", speed=SPEED)
    rec = MemoryRecorder()

    async def scenario() -> float:
        daemon, _clock, transport = make_daemon(virtual_air, [Spec("chest", "F0:00:00:00:00:01",
                                                                   "heart_rate")], rec)
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: len(rec.notes("chest")) >= 60, 10, "first notifications")
        before = len(rec.notes("chest"))
        VirtualAirProc.disconnect(strap)
        await wait_until(lambda: any(e.kind == "disconnected" for e in rec.kinds("chest")), 5,
                         "the disconnect")
        await wait_until(lambda: len(rec.notes("chest")) > before + 60, 10, "data after")
        lost = next(e for e in rec.kinds("chest") if e.kind == "disconnected")
        first_after = next(n for n in rec.notes("chest") if n.mono_ns > lost.mono_ns)
        resumed = (first_after.mono_ns - lost.mono_ns) / 1e9 / SPEED
        daemon.stop()
        await task
        await transport.close()
        return resumed

    resumed_real_s = asyncio.run(scenario())
    assert rec.closed
    # First retry waits at most min_s (jitter only shortens it).
    assert resumed_real_s <= POLICY.min_s / SPEED + CONNECT_ALLOWANCE_S
    kinds = [e.kind for e in rec.kinds("chest")]
    assert kinds.count("connected") == 2 and kinds.count("subscribed") == 2
    lost = next(e for e in rec.kinds("chest") if e.kind == "disconnected")
    notes = rec.notes("chest")
    before = [hr_seq(n.payload) for n in notes if n.mono_ns < lost.mono_ns]
    after = [hr_seq(n.payload) for n in notes if n.mono_ns > lost.mono_ns]
    # Every frame the strap sent before and after the drop is in the record, in order
    # (the strap numbers only frames it actually sent, so the sequence has no holes).
    assert before == list(range(len(before))) and len(before) >= 60
    assert after == list(range(len(before), len(before) + len(after))) and len(after) >= 60


def test_silent_device_trips_the_watchdog_and_is_reconnected_after_restart(
    virtual_air: VirtualAirProc,  # noqa: F811
) -> None:
    strap = virtual_air.start("chest", speed=SPEED)
    rec = MemoryRecorder()
    watchdog_s = 60.0

    async def scenario() -> tuple[float, float]:
        daemon, clock, transport = make_daemon(
            virtual_air, [Spec("chest", "F0:00:00:00:00:01", "heart_rate")], rec, watchdog_s
        )
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: len(rec.notes("chest")) >= 60, 10, "first notifications")
        VirtualAirProc.kill(strap)  # SIGKILL: no disconnect reaches the daemon
        t_kill = clock.mono_ns()
        await wait_until(lambda: any(e.kind == "watchdog" for e in rec.kinds("chest")), 10,
                         "the watchdog")
        wd = next(e for e in rec.kinds("chest") if e.kind == "watchdog")
        silent_s = (wd.mono_ns - t_kill) / 1e9
        n_before = len(rec.notes("chest"))
        await asyncio.sleep(0.5)
        virtual_air.start("chest", speed=SPEED)
        t_back = clock.mono_ns()
        await wait_until(lambda: len(rec.notes("chest")) > n_before + 30, 15, "data after restart")
        resumed = (rec.notes("chest")[n_before].mono_ns - t_back) / 1e9 / SPEED
        daemon.stop()
        await task
        await transport.close()
        return silent_s, resumed

    silent_s, resumed_real_s = asyncio.run(scenario())
    # The watchdog fires after watchdog_s of silence, checked every watchdog_s / 4.
    assert watchdog_s - 2.0 <= silent_s <= watchdog_s * 1.25 + 10.0
    kinds = [e.kind for e in rec.kinds("chest")]
    # No disconnect was reported by the radio before the watchdog: the device was silent.
    wd_index = kinds.index("watchdog")
    assert "disconnected" not in kinds[:wd_index]
    assert resumed_real_s <= POLICY.max_s / SPEED + 1.0 + CONNECT_ALLOWANCE_S
    seqs = [hr_seq(n.payload) for n in rec.notes("chest")]
    runs = contiguous_runs(seqs)
    # Old process: one run from 0; the new process restarts its counter at 0: a second run
    # from 0. Nothing either process sent while subscribed is missing.
    assert len(runs) == 2 and runs[0][0] == 0 and runs[1][0] == 0, runs


def test_device_gone_for_minutes_comes_back_and_the_gap_is_unscored(
    virtual_air: VirtualAirProc,  # noqa: F811
) -> None:
    vanish_real_s = 4.0  # 4 min at 60x
    strap = virtual_air.start("chest", speed=SPEED, vanish_s=vanish_real_s)
    rec = MemoryRecorder()

    async def scenario() -> float:
        daemon, clock, transport = make_daemon(
            virtual_air, [Spec("chest", "F0:00:00:00:00:01", "heart_rate")], rec
        )
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: len(rec.notes("chest")) >= 120, 10, "first notifications")
        VirtualAirProc.vanish(strap)
        t_gone = clock.mono_ns()
        n_before = len(rec.notes("chest"))
        await wait_until(lambda: len(rec.notes("chest")) > n_before, vanish_real_s + 10,
                         "the device to come back")
        t_first = rec.notes("chest")[n_before].mono_ns
        back_after = ((t_first - t_gone) / 1e9 / SPEED) - vanish_real_s
        await wait_until(lambda: len(rec.notes("chest")) > n_before + 120, 10, "data after")
        daemon.stop()
        await task
        await transport.close()
        return back_after

    back_after_real_s = asyncio.run(scenario())
    assert back_after_real_s <= POLICY.max_s / SPEED + 1.0 + CONNECT_ALLOWANCE_S
    notes = rec.notes("chest")
    t_ns = np.array([n.wall_ns for n in notes], dtype=np.int64)
    _epochs, counts = epoch_coverage(t_ns, int(t_ns[0]), int(t_ns[-1]))
    empty = np.flatnonzero(counts == 0)
    # 4 minutes away = 8 epochs; at least 6 whole epochs have no data (edges may be partial).
    assert empty.size >= 6
    # The empty epochs form one block, with data on both sides.
    assert np.all(np.diff(empty) == 1)
    assert counts[: empty[0]].sum() > 0 and counts[empty[-1] + 1 :].sum() > 0
    gap_s = float(np.diff(t_ns).max()) / 1e9
    assert gap_s >= 4 * 60 * 0.9
    # The strap numbers only frames it sent: every one of them is in the record, in order.
    seqs = [hr_seq(n.payload) for n in notes]
    assert seqs == list(range(len(seqs)))
