"""``sensord backfill``: session logs -> decode -> score -> a real influxd; idempotent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sensord import pipeline
from sensord.cli import app
from sensord.simulate import SimConfig, simulate_to_files
from sensord.staging.core import score_night
from sensord.store.local import LocalStore
from tests.influx import InfluxDB, quote_str


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sim")
    cfg = SimConfig(
        seed=5, nights=2, duration_h=1.5, disconnects_per_night=1.0, participant='sim, P=1 "x"'
    )
    _, paths = simulate_to_files(cfg, out)
    return paths


def config(tmp_path: Path, db: InfluxDB) -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(
        f'participant_id = "IGN01"\ndata_dir = "{tmp_path / "data"}"\n'
        # the log header's hostile id below is this test's point (escaping on the wire):
        # a study pattern that lets it through; the e-mail/phone/name refusal still applies
        "pseudonym_pattern = '.+'\n"
        '[[devices]]\nname = "polar_h10"\naddress = "A0:00"\nprofile = "polar_h10"\n'
        'role = "chest"\n'
        f'[sink]\nkind = "influxdb1"\nurl = "{db.url}"\ndatabase = "{db.name}"\n'
    )
    return path


def test_backfill_writes_what_decoding_and_scoring_produce(
    logs: list[Path], influxdb: InfluxDB, tmp_path: Path
) -> None:
    cfg = config(tmp_path, influxdb)
    res = CliRunner().invoke(app, ["backfill", "-c", str(cfg), *map(str, logs)])
    assert res.exit_code == 0, res.output
    assert "backfilled 2 night(s)" in res.output and "0 quarantined" in res.output
    who = 'sim, P=1 "x"'  # from the log header, special characters and all
    for log in logs:
        session = pipeline.load_session([log])
        dev = session.report.devices["polar_h10"]
        result = score_night(session.night, tz=session.report.headers[0].tz)
        t0, t1 = session.report.start_ns, session.report.end_ns + 1
        where = f"participant = {quote_str(who)} AND time >= {t0} AND time < {t1}"
        hr = influxdb.rows("heart_rate", where)
        assert [r["time"] for r in hr] == dev.get("hr").t_ns.tolist()
        assert [r["hr_bpm"] for r in hr] == dev.get("hr").hr_bpm.tolist()
        assert {r["device_role"] for r in hr} == {"chest"}
        beats = influxdb.rows("beat", where)
        assert [(r["time"], r["rr_ms"]) for r in beats] == list(
            zip(dev.get("beats").t_ns.tolist(), dev.get("beats").rr_ms.tolist(), strict=True)
        )
        ep_where = f"participant = {quote_str(who)} AND time >= {int(result.features['t_ns'][0])}"
        ep_where += f" AND time <= {int(result.features['t_ns'][-1])}"
        epochs = influxdb.rows("epoch", ep_where)
        assert [r["stage_code"] for r in epochs] == result.hypnogram.stages.tolist()
        assert {r["scorer"] for r in epochs} == {result.hypnogram.scorer}
        assert {r["night"] for r in epochs} == {result.summary["night"]}
        night = influxdb.rows("night", f"time = {result.summary['start_ns']}")
        assert len(night) == 1
        assert night[0]["tst_min"] == result.summary["tst_min"]
        assert night[0]["night"] == result.summary["night"]
        ev0 = session.report.device_events[0].wall_ns
        ev1 = session.report.device_events[-1].wall_ns + 100
        events = influxdb.rows(
            "device_event", f"participant = {quote_str(who)} AND time >= {ev0} AND time < {ev1}"
        )
        assert len(events) == len(session.report.device_events) > 0
        assert [r["event"] for r in events] == [e.kind for e in session.report.device_events]
    with LocalStore(tmp_path / "data" / "sensord.sqlite") as store:
        nights = store.list_nights(who)
        assert len(nights) == 2 and all(n["final"] for n in nights)
        first = store.get_night_epochs(who, nights[0]["night"], nights[0]["scorer"])
        assert len(first["stage"]) == len(first["t_ns"]) > 0
        assert store.stats().pending_lines == 0

    # idempotent: the same logs again give the same points, nothing more
    def snapshot() -> tuple[object, ...]:
        return (
            influxdb.series_count(),
            *(
                influxdb.query(f'SELECT COUNT(*) FROM "{m}"').rows()[0]
                for m in (
                    "heart_rate",
                    "beat",
                    "epoch",
                    "epoch_features",
                    "night",
                    "device_event",
                    "device_coverage",
                )
            ),
        )

    before = snapshot()
    again = CliRunner().invoke(app, ["backfill", "-c", str(cfg), *map(str, logs)])
    assert again.exit_code == 0, again.output
    assert snapshot() == before


def test_backfill_without_scoring_and_queue_only(
    logs: list[Path], influxdb: InfluxDB, tmp_path: Path
) -> None:
    cfg = config(tmp_path, influxdb)
    res = CliRunner().invoke(
        app,
        [
            "backfill",
            "-c",
            str(cfg),
            "--no-scoring",
            "--queue-only",
            "--participant",
            "P-override",
            str(logs[0]),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "queued" in res.output
    assert influxdb.measurements() == []  # nothing sent yet
    push = CliRunner().invoke(app, ["push", "-c", str(cfg)])
    assert push.exit_code == 0, push.output
    assert set(influxdb.measurements()) == {"heart_rate", "beat", "device_event", "device_battery"}
    session = pipeline.load_session([logs[0]])
    n_hr = len(session.report.devices["polar_h10"].get("hr"))
    assert influxdb.count("heart_rate", "hr_bpm", "participant = 'P-override'") == n_hr
    assert np.isfinite(n_hr) and n_hr > 1000


def test_coverage_per_epoch_counts_the_distinct_seconds_holding_samples() -> None:
    """Against a plain-Python reference, on unsorted times with duplicates, times before
    the first epoch and after the last, and more samples than one processing block."""
    from sensord.store import points

    rng = np.random.default_rng(9)
    s_ns = 1_000_000_000
    start = 1_800_000_000 * s_ns
    epochs = start + np.arange(40, dtype=np.int64) * 30 * s_ns
    t = start + rng.integers(-120 * s_ns, 1300 * s_ns, 80_000)
    t[1500:] = start + 601 * s_ns + rng.integers(0, s_ns, t.size - 1500)  # one busy second
    t = t[(t < start + 300 * s_ns) | (t >= start + 420 * s_ns)]  # epochs 10-13: empty
    seconds: list[set[int]] = [set() for _ in epochs]
    for v in t.tolist():
        if v >= start and (v - start) // s_ns < 30 * len(epochs):
            k = (v - start) // s_ns
            seconds[k // 30].add(k)
    expected = [len(s) / 30 for s in seconds]
    got = points.coverage_per_epoch(t, epochs)
    assert got.tolist() == expected
    assert got[10:14].tolist() == [0.0] * 4
    assert 0 < np.median(got) < 1  # sparse elsewhere: partly covered epochs
