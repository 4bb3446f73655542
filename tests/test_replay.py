"""Replay: plays a log through the daemon's Pipeline; deterministic; same as live."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from sensord import blelog
from sensord.ble.replay import ReplayTransport, replay
from sensord.devices.heart_rate import BATTERY_LEVEL, HEART_RATE_MEASUREMENT, encode_hrm
from sensord.errors import TransportError
from sensord.model import ClockEvent, DeviceEvent, RawNotification
from sensord.pipeline import DeviceStreams, Pipeline, load_session
from sensord.simulate import SimConfig, simulate_to_files


@pytest.fixture(scope="module")
def sim_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for profile in ("polar_h10", "infinitime"):
        cfg = SimConfig(seed=5, profile=profile, duration_h=1.0, dropouts_per_h=3,
                        disconnects_per_night=1.5)
        _, logs = simulate_to_files(cfg, tmp_path_factory.mktemp(profile))
        out[profile] = logs[0]
    return out


def _same(a: dict[str, DeviceStreams], b: dict[str, DeviceStreams]) -> None:
    assert a.keys() == b.keys()
    for dev in a:
        assert a[dev].names() == b[dev].names()
        assert a[dev].notifications == b[dev].notifications
        for name in a[dev].names():
            sa, sb = a[dev].get(name), b[dev].get(name)
            for f in sa.__dataclass_fields__:
                np.testing.assert_array_equal(getattr(sa, f), getattr(sb, f), err_msg=name)


@pytest.mark.parametrize("profile", ["polar_h10", "infinitime"])
def test_replay_equals_batch_load(sim_logs: dict[str, Path], profile: str) -> None:
    log = sim_logs[profile]
    assert any(e.kind == "disconnected" for e in blelog.iter_events(log)
               if isinstance(e, DeviceEvent)), "the fixture exercises a disconnect"
    pipe = Pipeline(batch_size=500)
    asyncio.run(replay([log], pipe))
    session = load_session([log], batch_size=500)
    _same(pipe.devices, session.devices)
    night = session.night
    assert night.hr is not None and night.acc is not None
    assert len(night.hr) == len(pipe.night().hr)  # type: ignore[arg-type]


def test_load_session_calls_after_read_once_between_reading_and_decoding(
    sim_logs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sensord.pipeline as pipeline

    steps: list[str] = []
    read, decode = pipeline.blelog.load, pipeline.decode_channel
    monkeypatch.setattr(pipeline.blelog, "load",
                        lambda *a, **k: (steps.append("read"), read(*a, **k))[1])
    monkeypatch.setattr(pipeline, "decode_channel",
                        lambda *a, **k: (steps.append("decode"), decode(*a, **k))[1])
    logs = [sim_logs["polar_h10"], sim_logs["infinitime"]]
    session = load_session(logs, after_read=lambda: steps.append("after_read"))
    assert steps[:3] == ["read", "read", "after_read"]
    assert steps.count("after_read") == 1 and set(steps[3:]) == {"decode"}
    _same(session.devices, load_session(logs).devices)


def test_replay_is_deterministic_and_pacing_does_not_change_results(
    sim_logs: dict[str, Path], tmp_path: Path
) -> None:
    log = sim_logs["polar_h10"]
    a, b = Pipeline(), Pipeline()
    asyncio.run(replay([log], a))
    asyncio.run(replay([log], b))
    _same(a.devices, b.devices)
    # a short paced slice gives exactly the unpaced result
    short = tmp_path / "short.blelog"
    with blelog.BlelogWriter(short, participant="p", tz="UTC", host="h", wall_ns=10**18,
                             mono_ns=0, fsync=False) as w:
        for n, ev in enumerate(blelog.iter_events(log)):
            if n > 60:
                break
            w.write(ev)
    fast, paced = Pipeline(), Pipeline()
    asyncio.run(replay([short], fast))
    asyncio.run(replay([short], paced, speed=50.0))
    _same(fast.devices, paced.devices)


def test_paced_replay_takes_recorded_time_over_speed(tmp_path: Path) -> None:
    log = tmp_path / "two_seconds.blelog"
    t0 = 10**18
    with blelog.BlelogWriter(log, participant="p", tz="UTC", host="h", wall_ns=t0, mono_ns=0,
                             fsync=False) as w:
        w.write(DeviceEvent("s", "connected", t0, 0))
        for i in range(5):
            w.write(RawNotification("s", HEART_RATE_MEASUREMENT, t0 + i * 5 * 10**8,
                                    i * 5 * 10**8, encode_hrm(60)))
    start = time.monotonic()
    asyncio.run(replay([log], Pipeline(), speed=4.0))
    assert time.monotonic() - start >= 2.0 / 4.0 * 0.95  # 2 s recorded at 4x


def test_transport_protocol(tmp_path: Path) -> None:
    log = tmp_path / "t.blelog"
    t0 = 10**18
    with blelog.BlelogWriter(log, participant="p", tz="UTC", host="h", wall_ns=t0, mono_ns=0,
                             fsync=False) as w:
        w.write(DeviceEvent("AA:01", "connected", t0, 1))
        w.write(DeviceEvent("AA:01", "services", t0, 2, "0000180d-0000-1000-8000-00805f9b34fb"))
        w.write(RawNotification("AA:01", BATTERY_LEVEL, t0, 3, b"\x57"))
        w.write(ClockEvent(t0, 4, 2_000_000_000, True))
        w.write(RawNotification("BB:02", BATTERY_LEVEL, t0, 5, b"\x11"))  # not connected
        w.write(DeviceEvent("AA:01", "disconnected", t0, 6, "0x13"))

    async def run() -> tuple[list, list[str], bytes, list]:
        tr = ReplayTransport([log])
        ads = await tr.scan(timeout_s=1, service_uuids=("0000180D-0000-1000-8000-00805F9B34FB",))
        got: list = []
        gone: list[str] = []
        conn = await tr.connect("strap", "AA:01", got.append, timeout_s=1,
                                on_disconnect=gone.append)
        await conn.start_notify(BATTERY_LEVEL)
        await tr.run()
        value = await conn.read(BATTERY_LEVEL)
        with pytest.raises(TransportError, match="no recorded value"):
            await conn.read(HEART_RATE_MEASUREMENT)
        return ads, gone, value, got

    ads, gone, value, got = asyncio.run(run())
    assert [a.address for a in ads] == ["AA:01"]
    assert gone == ["strap"]
    assert value == b"\x57"
    assert [type(e).__name__ for e in got] == ["DeviceEvent", "DeviceEvent", "RawNotification",
                                              "ClockEvent", "DeviceEvent"]
    assert all(e.device == "strap" for e in got if not isinstance(e, ClockEvent))


def test_live_pipeline_log_replays_to_the_same_streams(sim_logs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Live: events -> Pipeline(writer) logs and decodes; replaying that log matches."""
    live_log = tmp_path / "live.blelog"
    writer = blelog.BlelogWriter(live_log, participant="p", tz="UTC", host="h",
                                 wall_ns=10**18, mono_ns=0, fsync=False)
    live = Pipeline(writer=writer, batch_size=300)
    for ev in blelog.iter_events(sim_logs["polar_h10"]):
        live.feed(ev)
    live.close()
    again = Pipeline(batch_size=300)
    asyncio.run(replay([live_log], again))
    _same(live.devices, again.devices)
    assert live.report().as_dict()["streams"] == again.report().as_dict()["streams"]


def test_device_streams_join_batches_as_one_stable_sort_and_let_the_batches_go() -> None:
    """Decode batches are joined into one stream sorted by time: each batch is sorted,
    neighbours overlap a little (each maps device time to host time on its own). The
    reference is numpy's stable sort of the concatenation; the batches are let go as they
    are copied (the night is never held twice)."""
    from sensord.model import AccStream

    rng = np.random.default_rng(2)
    parts, start = [], 0
    for k in range(12):
        n = int(rng.integers(1, 400))
        t = np.sort(start + rng.integers(0, 20 * n, n))
        start = int(t[-1]) - int(rng.integers(0, 60))  # the next batch overlaps this one
        acc = rng.normal(size=(n, 3))
        parts.append(AccStream(t.astype(np.int32 if k % 3 == 0 else np.int64), acc))
    t_all = np.concatenate([p.t_ns.astype(np.int64) for p in parts])
    acc_all = np.concatenate([p.acc_g for p in parts])
    order = np.argsort(t_all, kind="stable")
    streams = DeviceStreams("chest")
    for p in parts:
        streams._add("acc", p)
    batches = streams._parts["acc"]
    del parts, p
    joined = streams.get("acc")
    assert joined.t_ns.dtype == np.int64 and joined.acc_g.shape == acc_all.shape
    np.testing.assert_array_equal(joined.t_ns, t_all[order])
    np.testing.assert_array_equal(joined.acc_g, acc_all[order])
    assert batches == [None] * 12  # nothing but the joined stream holds the samples
