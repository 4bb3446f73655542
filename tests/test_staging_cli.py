"""`sensord score` on a session log written by the simulator, against its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensord.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("sim")
    res = runner.invoke(app, ["simulate", "--out", str(out), "--seed", "3",
                              "--duration-h", "3", "--tz", "Europe/Zurich"])
    assert res.exit_code == 0, res.output
    log = next(out.glob("*.blelog"))
    truth = next(out.glob("*.hypnogram.csv"))
    return log, truth


def test_score_json_recovers_the_simulated_stages(sim: tuple[Path, Path]) -> None:
    log, truth = sim
    res = runner.invoke(app, ["score", str(log), "--tz", "Europe/Zurich", "--truth", str(truth),
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    s = out["summary"]
    assert s["tib_min"] == pytest.approx(180, abs=1) and s["coverage"] > 0.95
    assert s["night"] == "2026-11-20" and s["scorer"].startswith("sensord-stager-")
    agree = out["agreement"]
    assert agree["sleep_wake"]["kappa"] >= 0.5
    assert agree["four_class"]["kappa"] >= 0.25
    assert len(out["epochs"]["stage"]) == len(out["epochs"]["t_ns"]) == s["epochs"]


def test_score_csv_and_text(sim: tuple[Path, Path]) -> None:
    log, _ = sim
    res = runner.invoke(app, ["score", str(log), "--csv"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("t_ns,utc,stage,p_wake")
    assert len(lines) > 300 and {ln.split(",")[2] for ln in lines[1:]} <= {
        "wake", "light", "deep", "rem", "unscored"}
    text = runner.invoke(app, ["score", str(log)])
    assert text.exit_code == 0 and "TST" in text.stdout and "hypnogram" in text.stdout


def test_score_names_a_missing_log(tmp_path: Path) -> None:
    res = runner.invoke(app, ["score", str(tmp_path / "nope.blelog")])
    assert res.exit_code == 2 and "nope.blelog" in res.output


def test_score_takes_the_zone_from_the_log_header(tmp_path: Path) -> None:
    # A night simulated from 23:00 Auckland time (UTC+13 in November): 10:00 UTC, so a
    # UTC reading would name the night before (nights change at local noon).
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--seed", "4",
                              "--duration-h", "1", "--tz", "Pacific/Auckland",
                              "--start", "2026-11-20T23:00"])
    assert res.exit_code == 0, res.output
    log = next(tmp_path.glob("*.blelog"))

    def summary(*extra: str) -> dict:
        out = runner.invoke(app, ["score", str(log), "--json", *extra])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["summary"]

    default = summary()
    assert default["tz"] == "Pacific/Auckland" and default["night"] == "2026-11-20"
    assert default["start_local"].startswith("2026-11-20T23:") and \
        default["start_local"].endswith("+13:00")
    explicit = summary("--tz", "UTC")  # an explicit zone wins over the header
    assert explicit["tz"] == "UTC" and explicit["night"] == "2026-11-19"
    assert explicit["start_local"].startswith("2026-11-20T10:")
    assert explicit["start_ns"] == default["start_ns"]
