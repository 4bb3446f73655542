"""Reconnect, watchdog and backoff against bumble virtual wearables over TCP HCI links.

Time runs 60x faster (ScaledClock) for the daemon and the wearables alike, so "minutes"
of absence take seconds. Radio operations (connect) still take real time, which is why
bounds below are "backoff bound + a real-time connect allowance". Everything is checked
in the session log the daemon wrote, read back with the log reader.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from sensord.backoff import BackoffPolicy
from sensord.ble.bumble_transport import BumbleTransport
from sensord.clock import epoch_coverage
from sensord.daemon import Daemon, DaemonOptions, SupervisorOptions, rescore_logs
from sensord.model import EPOCH_NS
from sensord.timesource import ScaledClock
from tests.bumble_env import VirtualAirProc, virtual_air  # noqa: F401
from tests.daemon_helpers import LogView, hr_seq, live_count, make_pipeline, status_of, wait_until

SPEED = 60.0
WALL0_NS = 1_760_000_000 * 10**9 // EPOCH_NS * EPOCH_NS  # epoch-aligned start
CONNECT_ALLOWANCE_S = 1.5  # real seconds for connect + discovery + setup on a busy CI box
SCHED_SLACK_S = 0.5  # real seconds of event-loop latency between a sleep's end and the next step
POLICY = BackoffPolicy(min_s=2.0, max_s=30.0, factor=2.0, jitter=0.3)


class Spec:
    def __init__(self, name: str, address: str, profile: str, role: str = "chest") -> None:
        self.name, self.address, self.profile, self.role = name, address, profile, role


CHEST = Spec("chest", "F0:00:00:00:00:01", "heart_rate")


def make_daemon(air: VirtualAirProc, log_path: Path, watchdog_s: float = 60.0,
                spec: Spec = CHEST) -> tuple[Daemon, ScaledClock, BumbleTransport]:
    clock = ScaledClock(speed=SPEED, wall0_ns=WALL0_NS)
    transport = BumbleTransport(air.hci("central"), clock=clock)
    options = DaemonOptions(
        supervisor=SupervisorOptions(watchdog_s=watchdog_s, connect_timeout_s=1.0,
                                     backoff=POLICY, stable_after_s=30.0),
    )
    daemon = Daemon([spec], transport, make_pipeline(log_path, clock), clock=clock,
                    options=options, seed=1)
    return daemon, clock, transport


def attempts(log: LogView, device: str = "chest") -> list[tuple[int, float]]:
    """``(mono_ns, backoff_s)`` of every connection attempt the supervisor logged."""
    out = []
    for e in log.kinds(device):
        if e.kind == "connecting":
            key, _, value = e.detail.partition("=")
            assert key == "backoff_s", e.detail
            out.append((e.mono_ns, float(value)))
    return out


def assert_backoffs_follow_the_policy(waits: list[float]) -> None:
    """The first attempt waits for nothing; every retry waits within the policy's bounds."""
    assert waits and waits[0] == 0.0
    for w in waits[1:]:
        assert POLICY.min_s * (1 - POLICY.jitter) - 1e-3 <= w <= POLICY.max_s + 1e-3, waits


def contiguous_runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def test_device_that_disconnects_is_back_within_the_first_backoff_step(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    strap = virtual_air.start("chest", speed=SPEED)
    log_path = tmp_path / "night.blelog"

    async def scenario() -> None:
        daemon, _clock, transport = make_daemon(virtual_air, log_path)
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "chest") >= 60, 10, "first notifications")
        VirtualAirProc.disconnect(strap)
        await wait_until(lambda: status_of(daemon, "chest").disconnects >= 1, 5, "the drop")
        n = live_count(daemon, "chest")
        await wait_until(lambda: live_count(daemon, "chest") > n + 60, 10, "data after")
        daemon.stop()
        await task
        await transport.close()

    asyncio.run(scenario())
    log = LogView(log_path)
    kinds = [e.kind for e in log.kinds("chest")]
    assert kinds.count("connected") == 2 and kinds.count("subscribed") == 2
    lost = next(e for e in log.kinds("chest") if e.kind == "disconnected")
    notes = log.notes("chest")
    tries = attempts(log)
    assert_backoffs_follow_the_policy([w for _t, w in tries])
    retry_ns, waited_s = next((t, w) for t, w in tries if t > lost.mono_ns)
    # After a stable stream the first retry waits at most min_s (jitter only shortens it)...
    assert POLICY.min_s * (1 - POLICY.jitter) - 1e-3 <= waited_s <= POLICY.min_s + 1e-3
    # ... and the supervisor did wait that long, and no longer, after the drop.
    elapsed_s = (retry_ns - lost.mono_ns) / 1e9
    assert waited_s - 1e-3 <= elapsed_s <= waited_s + SCHED_SLACK_S * SPEED
    first_after = next(n for n in notes if n.mono_ns > retry_ns)
    assert (first_after.mono_ns - retry_ns) / 1e9 <= CONNECT_ALLOWANCE_S * SPEED
    before = [hr_seq(n.payload) for n in notes if n.mono_ns < lost.mono_ns]
    after = [hr_seq(n.payload) for n in notes if n.mono_ns > lost.mono_ns]
    # Every frame the strap sent before and after the drop is in the log, in order
    # (the strap numbers only frames it actually sent, so the sequence has no holes).
    assert before == list(range(len(before))) and len(before) >= 60
    assert after == list(range(len(before), len(before) + len(after))) and len(after) >= 60


def test_silent_device_trips_the_watchdog_and_is_reconnected_after_restart(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    strap = virtual_air.start("chest", speed=SPEED)
    log_path = tmp_path / "night.blelog"
    watchdog_s = 60.0
    marks: dict[str, int] = {}

    async def scenario() -> None:
        daemon, clock, transport = make_daemon(virtual_air, log_path, watchdog_s)
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "chest") >= 60, 10, "first notifications")
        VirtualAirProc.kill(strap)  # SIGKILL: no disconnect reaches the daemon
        marks["kill"] = clock.mono_ns()
        await wait_until(lambda: status_of(daemon, "chest").watchdogs >= 1, 10, "the watchdog")
        n = live_count(daemon, "chest")
        await asyncio.sleep(0.5)
        virtual_air.start("chest", speed=SPEED)
        marks["back"] = clock.mono_ns()
        await wait_until(lambda: live_count(daemon, "chest") > n + 30, 15, "data after restart")
        daemon.stop()
        await task
        await transport.close()

    asyncio.run(scenario())
    log = LogView(log_path)
    kinds = [e.kind for e in log.kinds("chest")]
    wd = next(e for e in log.kinds("chest") if e.kind == "watchdog")
    last_before = max(n.mono_ns for n in log.notes("chest") if n.mono_ns < wd.mono_ns)
    silent_s = (wd.mono_ns - last_before) / 1e9
    # Fires after watchdog_s of silence; checked every watchdog_s / 4 (plus scheduling).
    assert watchdog_s <= silent_s <= watchdog_s * 1.25 + 0.5 * SPEED
    # No disconnect came from the radio before the watchdog: the device was silent.
    assert "disconnected" not in kinds[: kinds.index("watchdog")]
    tries = attempts(log)
    assert_backoffs_follow_the_policy([w for _t, w in tries])
    # While the strap was dead the supervisor kept trying: consecutive attempts are spaced by
    # at most the capped backoff plus a failed connect (its timeout) and loop latency.
    gaps_s = np.diff([t for t, _w in tries]) / 1e9
    assert gaps_s.max() <= POLICY.max_s + (1.0 + CONNECT_ALLOWANCE_S + SCHED_SLACK_S) * SPEED
    first_new = next(n for n in log.notes("chest") if n.mono_ns > marks["back"])
    assert (first_new.mono_ns - marks["back"]) / 1e9 <= POLICY.max_s + CONNECT_ALLOWANCE_S * SPEED
    runs = contiguous_runs([hr_seq(n.payload) for n in log.notes("chest")])
    # Old process: one run from 0; the new process restarts its counter at 0: a second run
    # from 0. Nothing either process sent while subscribed is missing.
    assert len(runs) == 2 and runs[0][0] == 0 and runs[1][0] == 0, runs


def test_device_gone_for_minutes_comes_back_and_the_gap_is_unscored(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    vanish_real_s = 4.0  # 4 min at 60x
    # A Polar-like device (heart rate + 50 Hz accelerometer), so the stager has both.
    strap = virtual_air.start("chest", profile="pmd", speed=SPEED, vanish_s=vanish_real_s)
    log_path = tmp_path / "night.blelog"
    marks: dict[str, int] = {}

    async def scenario() -> None:
        daemon, clock, transport = make_daemon(
            virtual_air, log_path, spec=Spec("chest", "F0:00:00:00:00:01", "polar_pmd"))
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "chest") >= 120, 10, "first notifications")
        VirtualAirProc.vanish(strap)
        marks["gone"] = clock.mono_ns()
        n = live_count(daemon, "chest")
        await wait_until(lambda: live_count(daemon, "chest") > n + 120, vanish_real_s + 15,
                         "the device to come back")
        daemon.stop()
        await task
        await transport.close()

    asyncio.run(scenario())
    log = LogView(log_path)
    notes = log.notes("chest")
    back_mono = marks["gone"] + int(vanish_real_s * SPEED * 1e9)
    assert_backoffs_follow_the_policy([w for _t, w in attempts(log)])
    first_after = next(n for n in notes if n.mono_ns > marks["gone"] + 10**9 * 5)
    assert (first_after.mono_ns - back_mono) / 1e9 <= POLICY.max_s + CONNECT_ALLOWANCE_S * SPEED
    t_ns = np.array([n.wall_ns for n in notes], dtype=np.int64)
    _epochs, counts = epoch_coverage(t_ns, int(t_ns[0]), int(t_ns[-1]))
    empty = np.flatnonzero(counts == 0)
    # 4 minutes away = 8 epochs; at least 6 whole epochs have no data (edges may be partial).
    assert empty.size >= 6
    # The empty epochs form one block, with data on both sides.
    assert np.all(np.diff(empty) == 1)
    assert counts[: empty[0]].sum() > 0 and counts[empty[-1] + 1 :].sum() > 0
    assert float(np.diff(t_ns).max()) / 1e9 >= 4 * 60 * 0.9
    # The strap numbers only frames it sent: every one of them is in the log, in order.
    seqs = [hr_seq(n.payload) for n in notes]
    assert seqs == list(range(len(seqs)))
    # The night's final score from the log: the gap is unscored, the rest is scored.
    # (Epochs at the edges of the gap are partly covered; the rule is staging's.)
    _body, _rows, summary, ep = rescore_logs([log_path], participant="p01", tz="Europe/Berlin",
                                             roles={"chest": "chest"})
    assert summary is not None
    t_ep = np.array(ep["t_ns"], dtype=np.int64)
    stage = np.array(ep["stage"])
    per_epoch = np.bincount((t_ns - t_ep[0]) // EPOCH_NS, minlength=t_ep.size)[: t_ep.size]
    assert np.all(stage[per_epoch == 0] == -1) and (per_epoch == 0).sum() >= 6
    assert np.mean(stage[per_epoch >= 25] >= 0) > 0.8


def test_morning_disconnect_scores_the_night_from_its_log(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    # Every device gone in the morning (the predicate says the night window is ending):
    # after morning_quiet_s of silence the night is re-scored from its log, before any stop.
    strap = virtual_air.start("chest", profile="pmd", speed=SPEED, vanish_s=60.0)
    log_path = tmp_path / "night.blelog"
    clock = ScaledClock(speed=SPEED, wall0_ns=WALL0_NS)
    transport = BumbleTransport(virtual_air.hci("central"), clock=clock)
    options = DaemonOptions(
        supervisor=SupervisorOptions(watchdog_s=30.0, connect_timeout_s=1.0, backoff=POLICY),
        morning_quiet_s=120.0, rescore_on_stop=False, score_in_subprocess=False,
    )
    asked: list[int] = []

    def morning(now_ns: int) -> bool:
        asked.append(now_ns)
        return True

    daemon = Daemon([Spec("chest", "F0:00:00:00:00:01", "polar_pmd")], transport,
                    make_pipeline(log_path, clock), clock=clock, options=options, seed=1,
                    morning=morning)
    marks: dict[str, int] = {}

    async def scenario() -> None:
        task = asyncio.ensure_future(daemon.run())
        await wait_until(lambda: live_count(daemon, "chest") >= 360, 20, "6 min of data")
        assert not daemon.final_results  # nothing scored while the device streams
        VirtualAirProc.vanish(strap)
        marks["gone"] = clock.mono_ns()
        await wait_until(lambda: bool(daemon.final_results), 30, "the morning score")
        marks["scored"] = clock.mono_ns()
        daemon.stop()
        await task
        await transport.close()

    asyncio.run(scenario())
    assert asked  # the night-window predicate was consulted
    # Not before the quiet period (120 s clock after the last notification).
    assert (marks["scored"] - marks["gone"]) / 1e9 >= 120.0
    summary = daemon.final_results[0]
    # The score covers the logged data: one epoch per 30 s from the first to the last
    # notification in the log (independent count from the log's own timestamps).
    notes = LogView(log_path).notes("chest")
    span_s = (notes[-1].wall_ns - notes[0].wall_ns) / 1e9
    assert abs(int(summary["epochs"]) - span_s / 30) <= 2
    assert len(daemon.final_results) == 1  # once per quiet spell
