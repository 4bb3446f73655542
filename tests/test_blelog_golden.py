"""Golden sessions: every folder in tests/sessions/ is a session log with its expected
decoded output and expected line protocol; adding a device recording is adding a folder
(see build_golden.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensord.ble.replay import replay
from sensord.pipeline import Pipeline, load_session
from sensord.store.backfill import night_points

SESSIONS = Path(__file__).parent / "sessions"
FOLDERS = sorted(p for p in SESSIONS.iterdir() if (p / "session.blelog").exists())


def test_there_are_real_and_simulated_golden_sessions() -> None:
    names = [f.name for f in FOLDERS]
    assert any(n.startswith("polar_h7") for n in names)
    assert any(n.startswith("polar_h10") for n in names)
    assert any(n.startswith("sim-") for n in names)


def _check_stream(stream: Any, exp: dict[str, Any], where: str) -> None:
    assert stream is not None, f"{where}: stream missing"
    assert len(stream) == exp["samples"], where
    for key, want in exp.items():
        if key in ("samples", "strictly_increasing", "median_interval_ms", "t_tolerance_ms"):
            continue
        if key == "t_ns_close_to":
            err_ms = np.abs(stream.t_ns - np.asarray(want, dtype=np.int64)) / 1e6
            assert err_ms.max() <= exp["t_tolerance_ms"], f"{where}: time off by {err_ms.max()}"
            continue
        got = getattr(stream, key)
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                                   np.asarray(want, dtype=np.float64), rtol=0, atol=1e-9,
                                   err_msg=f"{where}.{key}")
    if exp.get("strictly_increasing"):
        assert (np.diff(stream.t_ns) > 0).all(), f"{where}: times not strictly increasing"
    if "median_interval_ms" in exp:
        lo, hi = exp["median_interval_ms"]
        assert lo <= np.median(np.diff(stream.t_ns)) / 1e6 <= hi, where


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_golden_session(folder: Path) -> None:
    expected = json.loads((folder / "expected.json").read_text())
    session = load_session([folder / "session.blelog"])
    for dev, streams in expected["devices"].items():
        assert dev in session.devices, f"device {dev} missing"
        for name, exp in streams.items():
            _check_stream(session.devices[dev].get(name), exp, f"{folder.name}/{dev}/{name}")
    kinds: dict[str, int] = {}
    for p in session.report.problems:
        kinds[p.kind] = kinds.get(p.kind, 0) + p.count
    assert kinds == expected["problems"]
    # the replay path gives the same streams
    pipe = Pipeline()
    asyncio.run(replay([folder / "session.blelog"], pipe))
    for dev, streams in expected["devices"].items():
        for name in streams:
            a, b = session.devices[dev].get(name), pipe.devices[dev].get(name)
            for f in a.__dataclass_fields__:
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_golden_session_line_protocol(folder: Path) -> None:
    """What backfill stores from the log (samples and device events; scoring has its own
    tests) equals expected.lp, built with influxdb-client's Point from the expected values.
    Beat lines are compared without their timestamps (see the file's header)."""
    text = (folder / "expected.lp").read_text()
    want = sorted(ln for ln in text.splitlines() if ln and not ln.startswith("#"))
    session = load_session([folder / "session.blelog"])
    participant = session.report.headers[0].participant
    roles = dict.fromkeys(session.devices, "chest")
    body, rows, summary, _ = night_points(session, participant=participant,
                                          tz="Europe/Zurich", roles=roles)
    assert summary is None
    got = []
    for line in body.decode().splitlines() + rows:
        if line.startswith("beat,"):
            line = line.rsplit(" ", 1)[0]
        got.append(line)
    assert sorted(got) == want
