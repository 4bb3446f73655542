"""Clock-step repair when logs are loaded (CLI, backfill, the daemon's final score): a host
whose wall clock stepped mid-night (a Raspberry Pi without RTC, NTP late) gets its times
back from the monotonic record, with the same result as re-timing record by record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sensord import blelog
from sensord import simulate as sim
from sensord.clock import repair_wall_ns
from sensord.pipeline import Pipeline, load_session

STEP_S = 2 * 3600.0


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> tuple[sim.Simulation, list[Path]]:
    cfg = sim.SimConfig(seed=5, profile="polar_h10", duration_h=1.0, acc_rate_hz=25.0,
                        clock_step_s=STEP_S)
    return sim.simulate_to_files(cfg, tmp_path_factory.mktemp("stepped"))


def test_loaded_times_follow_the_monotonic_record(
        stepped: tuple[sim.Simulation, list[Path]]) -> None:
    truth, logs = stepped
    night = truth.nights[0]
    raw = load_session(logs, repair_clock=False).night.hr
    hr = load_session(logs).night.hr
    assert raw is not None and hr is not None and len(hr) == len(raw) > 3000
    # without the repair the two-hour step is in the data
    assert abs(int(np.diff(raw.t_ns).max()) - STEP_S * 1e9) < 100 * 10**9
    # repaired: samples about 1 s apart all night, on the true timeline (the simulated
    # clock is 2 h behind until NTP steps it right 30 min in; the repair keeps the newest
    # setting, sensord.clock)
    assert int(np.diff(hr.t_ns).max()) < 100 * 10**9
    assert night.start_ns - 10**9 <= int(hr.t_ns[0]) < night.start_ns + 60 * 10**9
    assert night.end_ns - 60 * 10**9 < int(hr.t_ns[-1]) <= night.end_ns + 10**9
    assert int(hr.t_ns[-1]) == int(raw.t_ns[-1])  # after the step: as logged


def test_vectorised_repair_equals_retiming_record_by_record(
        stepped: tuple[sim.Simulation, list[Path]]) -> None:
    _truth, logs = stepped
    # the independent path: the streaming parser, repair over the records in arrival
    # order, then the live pipeline
    events = [ev for path in logs for ev in blelog.iter_events(path)]
    fixed = repair_wall_ns(np.array([e.wall_ns for e in events]),
                           np.array([e.mono_ns for e in events]))
    pipe = Pipeline(writer=None)
    for ev, wall in zip(events, fixed.tolist(), strict=True):
        pipe.feed(dataclasses.replace(ev, wall_ns=wall))
    pipe.end_session()
    want = pipe.night()
    got = load_session(logs).night
    assert (got.start_ns, got.end_ns) == (want.start_ns, want.end_ns)
    for name in ("hr", "beats", "acc"):
        a, b = getattr(got, name), getattr(want, name)
        assert a is not None and b is not None and len(a) == len(b) > 0, name
        for f in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=name)
