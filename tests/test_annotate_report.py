"""Report rendering: the night figure and HTML, the person report's tables and caveats."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from sensord import annotate as an
from sensord import nof1, report

TZ = "Europe/Berlin"
NS = 1_000_000_000


def t(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * NS


NOW = t(2026, 11, 25, 9, 0)


def test_rolling_rmssd_by_hand() -> None:
    # RR alternating 800/850 ms: every successive difference is 50 ms, so RMSSD = 50.
    rr = np.array([800.0, 850.0] * 200)
    tt = np.cumsum(rr).astype(np.int64) * 1_000_000
    _, rm = report.rolling_rmssd(tt, rr, window_s=60)
    assert np.nanmax(np.abs(rm - 50.0)) < 1e-9


def test_night_report_png_and_self_contained_html(tmp_path: Path) -> None:
    start = t(2026, 11, 24, 22, 0)
    n = 8 * 120
    epochs = start + np.arange(n, dtype=np.int64) * 30 * NS
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=n)
    codes[:5] = -1
    p = rng.dirichlet(np.ones(4), size=n)
    p[:5] = np.nan
    beats = np.cumsum(rng.normal(1000, 40, size=28_000)) * 1e6
    data = report.NightData(
        night="2026-11-24",
        tz=TZ,
        epoch_t_ns=epochs,
        stage_code=codes,
        p_stage=p,
        motion=rng.gamma(1.0, 5.0, size=n),
        hr_t_ns=epochs,
        hr_bpm=rng.normal(58, 3, size=n),
        rr_t_ns=(start + beats).astype(np.int64),
        rr_ms=rng.normal(1000, 40, size=28_000),
        metrics={"tst_min": 401.5, "se_pct": 83.6, "rem_min": 88.0},
        scorer="test-scorer@0",
    )
    note = an.event(
        '<script>alert("x")</script> & "quotes"\n😴', at="2026-11-25 02:10", now_ns=NOW, tz=TZ
    )
    png, html_path = report.night_report(data, [note], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = html_path.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "😴" in text
    assert "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text and 'src="/' not in text
    assert "401.5 min" in text and "83.6 %" in text


def test_person_report_shows_not_enough_nights_and_caveats(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    nights = []
    annotations = []
    for k in range(20):
        night = (dt.date(2026, 11, 1) + dt.timedelta(days=k)).isoformat()
        nights.append({"night": night, "rem_min": float(rng.normal(90, 10)), "tst_min": 420.0})
        if k in (3, 9, 15):  # three nights only
            annotations.append(
                an.substance(
                    "gabapentin", dose=300, unit="mg", at=f"{night} 21:00", now_ns=NOW, tz=TZ
                )
            )
    analysis = nof1.analyse_person(nights, annotations, n_boot=500)
    html_path = report.person_report(
        analysis, annotations, participant="P1", tz=TZ, out_dir=tmp_path, span="Nov 2026"
    )
    text = html_path.read_text()
    assert "not enough nights" in text
    for caveat in nof1.CAVEATS:
        assert caveat.split(":")[0] in text
    summary = json.loads((tmp_path / "person.json").read_text())
    rem = next(r for r in summary["same_night"] if r["metric"] == "rem_min")
    assert rem["enough"] is False and rem["n_exposed"] == 3 and rem["n_unexposed"] == 17
    assert rem["text"] == "not enough nights (3 vs 17 nights; need 4 in each)"
    assert "not enough nights" in report.person_text(analysis)


def test_report_night_cli_from_the_local_store(tmp_path: Path) -> None:
    from sensord.store.local import LocalStore
    from tests.annotate_helpers import PARTICIPANT, write_config
    from tests.test_annotate_cli import run

    cfg = write_config(tmp_path, tz=TZ)
    label = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    start = int(dt.datetime.fromisoformat(f"{label}T23:00+01:00").timestamp()) * NS
    n = 600
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=n)
    epochs = {
        "t_ns": [start + i * 30 * NS for i in range(n)],
        "stage": [("wake", "light", "deep", "rem")[int(i)] for i in p.argmax(axis=1)],
        "p_wake": p[:, 0].tolist(),
        "p_light": p[:, 1].tolist(),
        "p_deep": p[:, 2].tolist(),
        "p_rem": p[:, 3].tolist(),
        "hr_mean_bpm": rng.normal(57, 2, n).tolist(),
        "rmssd_ms": rng.normal(45, 5, n).tolist(),
        "activity_counts": rng.gamma(1, 3, n).tolist(),
    }
    store = LocalStore(tmp_path / "data" / "sensord.sqlite")
    store.put_night(
        {"participant": PARTICIPANT, "scorer": "s@1", "night": label, "start_ns": start,
         "end_ns": start + n * 30 * NS, "final": True, "tst_min": 250.5, "rem_min": 61.0},
        epochs=epochs,
    )  # fmt: skip
    store.close()
    assert (
        run(cfg, "note", "pain", "8", "--context", "night_waking", "--at", f"{label} 23:50")[0] == 0
    )
    out = tmp_path / "r"
    code, _, err = run(cfg, "report", "night", label, "--out", str(out))
    assert code == 0, err
    html_text = (out / f"night-{label}.html").read_text()
    assert "250.5 min" in html_text and "61.0 min" in html_text
    assert "Pain 8/10, night waking" in html_text
    assert (out / f"night-{label}.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run(cfg, "report", "night", "2020-01-01", "--out", str(out))
    assert code == 2 and "no scored night 2020-01-01" in err and label in err


def test_report_night_of_the_bundled_demo_with_its_session_log(tmp_path: Path,
                                                                screenshots: Path) -> None:
    """The demo night (real MMASH heartbeats, simulated hypnogram): stored with the
    simulator's ground truth as epochs and staging's night metrics, drawn with the raw
    heart rate, RR and motion from its session log. The PNG is kept for the docs."""
    import csv
    import shutil

    from sensord.staging.hypnogram import Hypnogram
    from sensord.staging.metrics import night_metrics
    from sensord.store.local import LocalStore
    from tests.annotate_helpers import PARTICIPANT, write_config
    from tests.test_annotate_cli import run

    data_dir = Path(__file__).resolve().parents[1] / "sensord" / "data"
    with (data_dir / "demo.hypnogram.csv").open() as f:
        rows = list(csv.DictReader(f))
    t = np.array([int(r["t_ns"]) for r in rows], dtype=np.int64)
    names = [r["stage4"] for r in rows]
    codes = np.array([("wake", "light", "deep", "rem").index(s) for s in names], dtype=np.int8)
    probs = np.eye(4)[codes]
    hyp = Hypnogram(int(t[0]), codes, probs, "demo-truth@1")
    metrics = {
        k: v
        for k, v in night_metrics(hyp).items()
        if k in ("tib_min", "tst_min", "se_pct", "sol_min", "waso_min", "rem_min", "deep_min")
        and v is not None
    }
    cfg = write_config(tmp_path, tz="UTC")
    store = LocalStore(tmp_path / "data" / "sensord.sqlite")
    store.put_night(
        {"participant": PARTICIPANT, "scorer": "demo-truth@1", "night": "2026-11-20",
         "start_ns": int(t[0]), "end_ns": int(t[-1]) + 30 * NS, "final": True, **metrics},
        epochs={"t_ns": t.tolist(), "stage": names, **{
            f"p_{n}": probs[:, i].tolist() for i, n in enumerate(("wake", "light", "deep", "rem"))
        }},
    )  # fmt: skip
    store.close()
    for args in (
        (
            "note",
            "substance",
            "alcohol",
            "--dose",
            "2",
            "--unit",
            "drinks",
            "--at",
            "2026-11-20 21:00",
        ),
        ("note", "pain", "5", "--context", "bedtime", "--at", "2026-11-20 22:00"),
        ("note", "event", "woke from pain", "--at", "2026-11-21 02:40"),
        ("note", "pain", "7", "--context", "night_waking", "--at", "2026-11-21 02:41"),
    ):
        assert run(cfg, *args)[0] == 0
    out = tmp_path / "r"
    code, _, err = run(
        cfg,
        "report",
        "night",
        "2026-11-20",
        "--log",
        str(data_dir / "demo.blelog"),
        "--out",
        str(out),
    )
    assert code == 0, err
    page = (out / "night-2026-11-20.html").read_text()
    assert f"{metrics['tst_min']:.1f} min" in page
    assert "woke from pain" in page and "Pain 7/10, night waking" in page
    png = out / "night-2026-11-20.png"
    assert png.stat().st_size > 50_000
    shutil.copyfile(png, screenshots / "report-night-demo.png")


def test_epoch_motion_sd_by_hand() -> None:
    t0 = 1_800_000_000 * NS
    # epoch 0: magnitudes 1, 3 -> SD (n-1) = sqrt(2); epoch 1: one sample -> NaN
    acc_t = np.array([t0, t0 + NS, t0 + 31 * NS], dtype=np.int64)
    acc = np.array([[1.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0]])
    sd = report.epoch_motion_sd(acc_t, acc, np.array([t0, t0 + 30 * NS], dtype=np.int64))
    assert sd[0] == pytest.approx(np.sqrt(2.0)) and np.isnan(sd[1])


def test_clean_rr_by_hand() -> None:
    rr = np.array([800.0, 810.0, 2500.0, 820.0, 830.0, 1200.0, 250.0])
    t = np.cumsum(rr).astype(np.int64) * 1_000_000
    kept_t, kept = report.clean_rr(t, rr)
    # 2500 out of range; 820 jumps >20 % from 2500; 1200 jumps >20 % from 830; 250 < 300
    assert kept.tolist() == [800.0, 810.0, 830.0]
    assert kept_t.tolist() == [t[0], t[1], t[4]]
