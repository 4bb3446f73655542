"""CLI: simulate, replay, decode, log info/cat, demo; --help everywhere (score and validate
too); errors exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensord.cli import app

runner = CliRunner()
DATA = Path(__file__).parents[1] / "../shared/data"
COMMANDS = [["simulate"], ["replay"], ["decode"], ["log", "info"], ["log", "cat"], ["demo"],
            ["log"], ["score"], ["validate", "walch"], ["validate", "mmash"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0
    assert "Usage" in res.output


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    res = runner.invoke(app, ["simulate", "--out", str(out), "--duration-h", "1", "--seed", "9",
                              "--profile", "hrs_strap", "--nights", "2", "--disconnects", "1"])
    assert res.exit_code == 0, res.output
    return out


def test_simulate_writes_logs_truth_and_summary(sim_dir: Path) -> None:
    logs = sorted(sim_dir.glob("*.blelog"))
    assert len(logs) == 2
    for log in logs:
        assert log.with_suffix(".hypnogram.csv").exists()
    summary = json.loads((sim_dir / "SIM01.truth.json").read_text())
    assert len(summary["nights"]) == 2
    assert summary["config"]["profile"] == "hrs_strap"


def test_replay_reports_devices_streams_and_gaps(sim_dir: Path) -> None:
    logs = [str(p) for p in sorted(sim_dir.glob("*.blelog"))]
    res = runner.invoke(app, ["replay", *logs])
    assert res.exit_code == 0, res.output
    assert "hrs_strap" in res.output and "hrs_strap/hr:" in res.output
    assert "gap" in res.output  # the disconnect
    assert "TST " in res.output and "hypnogram (30 s/char" in res.output
    res = runner.invoke(app, ["replay", logs[0], "--json"])
    doc = json.loads(res.output)
    hr = next(s for s in doc["streams"] if s["stream"] == "hr")
    assert 3000 < hr["samples"] <= 3600
    tib, _, _ = _truth_night(Path(logs[0]).with_suffix(".hypnogram.csv"))
    assert abs(doc["night_summary"]["tib_min"] - tib) <= 2.0
    assert 0 < doc["night_summary"]["tst_min"] <= tib
    assert doc["night_summary"]["feature_sets"]["hr"] > 0  # a strap without motion: HR only


def test_decode_prints_the_real_h7_values() -> None:
    src = json.loads((DATA / "ble/polar_h7/notifications.json").read_text())
    res = runner.invoke(app, ["decode", "--char", "2a37", *[f["hex"] for f in src["frames"]]])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines()]
    for got, want in zip(lines, src["frames"], strict=True):
        assert got["hr_bpm"] == want["heart_rate_bpm"]
        assert got["contact"] == want["sensor_contact"]
        assert got["rr_1024"] == want["rr_1024"]


def test_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["decode", "--char", "2a37", "16"])
    assert bad.exit_code == 2
    notlog = tmp_path / "x.blelog"
    notlog.write_bytes(b"not a log")
    for args in (["decode", "--char", "2a37", "zz"], ["log", "info", str(notlog)],
                 ["replay", str(notlog)], ["log", "cat", str(notlog)]):
        res = subprocess.run([sys.executable, "-m", "sensord", *args], capture_output=True,
                             text=True, check=False)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_log_info_and_cat(sim_dir: Path) -> None:
    log = sorted(sim_dir.glob("*.blelog"))[0]
    res = runner.invoke(app, ["log", "info", str(log)])
    assert res.exit_code == 0, res.output
    assert "participant SIM01" in res.output and "problems: 0" in res.output
    assert "00002a37-0000-1000-8000-00805f9b34fb" in res.output
    res = runner.invoke(app, ["log", "cat", str(log), "--decode", "--limit", "40"])
    assert res.exit_code == 0
    rows = res.output.splitlines()
    assert len(rows) == 40
    hrm = next(r for r in rows if "00002a37" in r and "hr_bpm" in r)
    line, utc, what = hrm.split("\t")
    assert int(line) > 1 and utc.endswith("Z")
    assert json.loads(what[what.index("{"):])["characteristic"] == "heart_rate_measurement"


SUMMARY_KEYS = ("night", "tib_min", "tst_min", "se_pct", "sol_min", "waso_min", "awakenings",
                "rem_latency_min", "wake_min", "light_min", "deep_min", "rem_min",
                "sfi_per_h", "hr_min_bpm", "rmssd_ms", "coverage", "scorer")


def _truth_night(csv_path: Path) -> tuple[float, float, float]:
    """TIB, TST and sleep-onset latency (min) of a simulator truth hypnogram, counted
    here with the csv module alone (30-s epochs; W wake, N1/N2/N3/R sleep)."""
    import csv

    with csv_path.open(newline="") as fh:
        stages = [row["stage"] for row in csv.DictReader(fh)]
    sleep = [s != "W" for s in stages]
    return len(stages) / 2, sum(sleep) / 2, sleep.index(True) / 2


def test_demo_replays_the_bundled_night() -> None:
    res = runner.invoke(app, ["demo"])
    assert res.exit_code == 0, res.output
    out = res.output
    for word in ("devices: 1", "polar_h10/hr:", "polar_h10/beats:", "polar_h10/acc:",
                 "coverage", "gap", "problems: 0"):
        assert word in out, word
    # the report ends with the night summary and the hypnogram (issue 3, deliverable 7)
    tail = out[out.index("problems: 0"):]
    assert "night 2026-11-20 (Europe/Zurich)" in tail and "TST " in tail and "WASO" in tail
    hyp_rows = [r.strip() for r in tail.splitlines()[1:] if set(r.strip()) <= set("WLDR.")
                and r.strip()]
    assert sum(len(r) for r in hyp_rows) >= 900  # ~7.8 h of 30-s epochs
    doc = json.loads(runner.invoke(app, ["demo", "--json"]).output)
    acc = next(s for s in doc["streams"] if s["stream"] == "acc")
    assert acc["samples"] > 600_000  # 25 Hz for most of ~7.8 h
    summary = doc["night_summary"]
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert "".join(hyp_rows) == doc["hypnogram"]
    # against the simulator's truth shipped beside the demo night (sensord/data/README.md)
    from sensord.cli import demo_log

    tib, tst, sol = _truth_night(demo_log().with_suffix(".hypnogram.csv"))
    assert abs(summary["tib_min"] - tib) <= 2.0
    assert abs(summary["tst_min"] - tst) <= 0.10 * tst, (summary["tst_min"], tst)
    assert abs(summary["sol_min"] - sol) <= 15.0, (summary["sol_min"], sol)
    assert summary["tst_min"] == 0.5 * sum(c in "LDR" for c in doc["hypnogram"])


def test_damaged_log_is_reported_and_the_rest_shown(sim_dir: Path, tmp_path: Path) -> None:
    log = sorted(sim_dir.glob("*.blelog"))[0]
    cut = tmp_path / "cut.blelog"
    cut.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    res = runner.invoke(app, ["log", "info", str(cut)])
    assert res.exit_code == 0, res.output
    assert "truncated-member" in res.output and "problems: " in res.output
    res = runner.invoke(app, ["replay", str(cut)])
    assert res.exit_code == 0
    assert "hrs_strap/hr:" in res.output and "truncated" in res.output
