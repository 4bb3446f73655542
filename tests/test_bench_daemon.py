"""``bench/daemon.py`` runs and reports what it measured (its figures are not judged here:
the budget is a measurement, which ``.ci/run`` prints; this checks the bench itself).

A half-hour night replayed twice: every record of the simulated log goes through, the
night is scored in about 60 epochs, the CPU figure is the least of the runs printed and
the peak RSS the most, and the interpreter is named. Bad options are refused by name.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sensord.blelog import iter_events
from sensord.simulate import simulate_to_files

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "daemon.py"


def bench_module() -> Any:
    """``bench/daemon.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bench_daemon", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_half_hour_night_twice(tmp_path: Path) -> None:
    out = run_bench("--hours", "0.5", "--runs", "2", "--source-only")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    runs = re.findall(r"^run \d: ([\d.]+) CPU-s/h, peak RSS ([\d.]+) MB \(recording\) and "
                      r"([\d.]+) MB \(scoring worker\), (\d+)x real time$", text, re.M)
    assert len(runs) == 2, text
    cpu = float(re.search(r"^cpu_per_hour_of_data = ([\d.]+) CPU-s/h", text, re.M)[1])
    assert cpu == min(float(r[0]) for r in runs) > 0
    rss = float(re.search(r"^peak_rss = ([\d.]+) MB", text, re.M)[1])
    assert rss == max(float(r[1]) for r in runs) > 20
    worker = float(re.search(r"^peak_rss_scoring_worker = ([\d.]+) MB", text, re.M)[1])
    assert worker == max(float(r[2]) for r in runs) > 20
    assert all(int(r[3]) > 1 for r in runs)  # faster than real time

    # every record of the same simulated night (counted here from the log) was replayed
    _sim, logs = simulate_to_files(bench_module().night_config(0.5), tmp_path)
    n_records = sum(1 for _ in iter_events(logs[0]))
    assert f"0.50 h of data, {n_records} records" in text, text
    # 30-s epochs of half an hour: 60, one more where the data straddle a boundary
    staged = re.search(r"provisional epochs (\d+) in (\d+) batches, final epochs (\d+)", text)
    assert staged is not None, text
    assert 55 <= int(staged[2]) <= 61 and 55 <= int(staged[1]) <= 61
    assert 60 <= int(staged[3]) <= 62
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"python: {version}, {os.path.realpath(sys.executable)}" in text


def test_bad_options_are_refused_by_name() -> None:
    runs = run_bench("--runs", "0")
    assert runs.returncode == 2 and "--runs must be at least 1, got 0" in runs.stderr
    hours = run_bench("--hours", "0.1", "--runs", "1")
    assert hours.returncode == 2
    assert "--hours 0.1: duration must be 0.5-16 h" in hours.stderr
    assert "Traceback" not in hours.stderr
