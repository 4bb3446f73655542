"""Issue 2: a full 8-h night of HR+RR plus a 50-Hz accelerometer stays under 30 MB."""

from __future__ import annotations

from pathlib import Path

from sensord.pipeline import load_session
from sensord.simulate import SimConfig, simulate_to_files


def test_eight_hour_night_with_50hz_acc_under_30_mb(tmp_path: Path) -> None:
    _, logs = simulate_to_files(SimConfig(seed=21, profile="polar_h10", duration_h=8.0,
                                          acc_rate_hz=50.0), tmp_path)
    size_mb = logs[0].stat().st_size / 1e6
    assert size_mb < 30, f"{size_mb:.1f} MB"
    night = load_session(logs).night
    assert night.acc is not None and night.beats is not None and night.hr is not None
    assert len(night.acc) >= 8 * 3600 * 50 * 0.99
    assert len(night.hr) >= 8 * 3600 * 0.99
    assert len(night.beats) >= 8 * 3600 * 0.7  # at least 42 bpm on average
