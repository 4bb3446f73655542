"""Validation on real data: Walch et al. 2019 (PSG) and MMASH (ActiGraph vendor summaries).

These run the CLI exactly as documented and assert the issue's targets on the data in
../shared/data (leave-one-subject-out for the stager: no subject is scored by a model
that saw it). The LOSO run trains 63 models (3 feature sets x 21 held-out subjects) in
about 30 s on 2 cores (single-threaded BLAS per worker, ``train.single_thread_blas``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensord.cli import app

DATA = Path("../shared/data")
runner = CliRunner()


def run_json(*args: str) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def loso() -> dict:  # type: ignore[type-arg]
    # all three feature sets, 21 folds each, in one pool of 2 workers
    return run_json("validate", "walch", "--data", str(DATA / "walch2019"), "--loso",
                    "--features", "hr+motion", "--features", "hr", "--features", "motion",
                    "--jobs", "2")


def test_walch_loso_targets_hr_and_motion(loso: dict) -> None:  # type: ignore[type-arg]
    r = loso["feature_sets"]["hr+motion"]
    assert len(loso["subjects"]) == 21 and loso["mode"] == "loso"
    assert len(r["per_subject_kappa_4class"]) == 21  # every subject held out once
    assert r["sleep_wake"]["kappa"] >= 0.45
    assert r["sleep_wake"]["wake_specificity"] >= 0.65
    assert r["three_class"]["kappa"] >= 0.45
    assert r["four_class"]["kappa"] >= 0.35
    assert r["four_class"]["epochs"] > 15_000


def test_walch_loso_hr_only(loso: dict) -> None:  # type: ignore[type-arg]
    """HR only meets the 3- and 4-class targets (measured 0.455 / 0.384); sleep/wake misses
    them (measured kappa 0.399, wake specificity 0.592, docs/staging.md): floors are those
    figures minus 0.02."""
    r = loso["feature_sets"]["hr"]
    assert len(r["per_subject_kappa_4class"]) == 21
    assert r["sleep_wake"]["kappa"] >= 0.38
    assert r["sleep_wake"]["wake_specificity"] >= 0.57
    assert r["three_class"]["kappa"] >= 0.45
    assert r["four_class"]["kappa"] >= 0.35


def test_walch_loso_motion_only(loso: dict) -> None:  # type: ignore[type-arg]
    """Motion only meets the sleep/wake target; without heart rate REM and NREM look
    alike, so 3- and 4-class miss (measured 0.260 / 0.244): floors are those minus 0.02."""
    r = loso["feature_sets"]["motion"]
    assert len(r["per_subject_kappa_4class"]) == 21
    assert r["sleep_wake"]["kappa"] >= 0.45
    assert r["sleep_wake"]["wake_specificity"] >= 0.65
    assert r["three_class"]["kappa"] >= 0.24
    assert r["four_class"]["kappa"] >= 0.22


def test_walch_shipped_model_and_bad_folder(tmp_path: Path) -> None:
    out = run_json("validate", "walch", "--data", str(DATA / "walch2019"),
                   "--features", "hr+motion")
    assert out["mode"] == "model" and out["model"].startswith("sensord-stager-")
    assert out["feature_sets"]["hr+motion"]["four_class"]["kappa"] >= 0.35
    bad = tmp_path / "features"
    bad.mkdir()
    src = DATA / "walch2019" / "features"
    for f in src.glob("46343_*"):
        shutil.copy(f, bad / f.name)
    (bad / "46343_hr_feature.out").write_text("0.1\n0.2\n")
    res = runner.invoke(app, ["validate", "walch", "--data", str(tmp_path), "--json"])
    assert res.exit_code == 2 and "46343" in res.output


def test_mmash_against_the_vendor_summaries() -> None:
    out = run_json("validate", "mmash", "--data", str(DATA / "mmash"))
    assert out["periods"] == 14
    ck = out["cole_kripke"]["errors"]
    assert ck["tst_min"]["n"] == 14
    assert ck["tst_min"]["median_abs_error"] <= 10
    assert ck["waso_min"]["median_abs_error"] <= 10
    sadeh = out["sadeh"]["errors"]
    assert sadeh["tst_min"]["n"] == 14 and sadeh["tst_min"]["median_abs_error"] is not None
    row = out["cole_kripke"]["rows"][0]
    assert row["user"] == "user_1" and row["vendor"]["tst_min"] == 144.0
