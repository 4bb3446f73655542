"""Validation metrics and dataset comparisons (pure: arrays in, dicts out).

Agreement statistics: accuracy, Cohen's kappa (Cohen 1960), and per class the
sensitivity (recall: epochs of that class scored as it) and specificity (epochs of other
classes not scored as it). "Wake specificity" in the sleep/wake literature is the
fraction of true wake epochs scored wake -- reported here as ``wake.sensitivity`` of
the sleep/wake table (and under its usual name ``wake_specificity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.staging.scorers import cole_kripke, sadeh
from sensord.staging.stager import StagerModel, stage
from sensord.staging.train import (
    THREE_CLASS,
    WalchNight,
    cohen_kappa,
    train_stager,
    walch_design,
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

TABLES: dict[str, tuple[str, ...]] = {
    "sleep_wake": ("wake", "sleep"),
    "three_class": ("wake", "nrem", "rem"),
    "four_class": ("wake", "light", "deep", "rem"),
}


def agreement(truth: I64, pred: I64, names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, kappa and per-class sensitivity/specificity of two label arrays."""
    k = len(names)
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    out: dict[str, Any] = {
        "epochs": int(truth.size),
        "accuracy": round(float(np.mean(truth == pred)), 4) if truth.size else None,
        "kappa": round(cohen_kappa(truth, pred, k), 4),
    }
    for c, name in enumerate(names):
        pos = truth == c
        called = pred == c
        sens = float(np.sum(pos & called) / pos.sum()) if pos.any() else float("nan")
        spec = float(np.sum(~pos & ~called) / (~pos).sum()) if (~pos).any() else float("nan")
        out[name] = {
            "sensitivity": round(sens, 4) if np.isfinite(sens) else None,
            "specificity": round(spec, 4) if np.isfinite(spec) else None,
        }
    return out


def stage_report(truth4: I64, pred4: I64) -> dict[str, Any]:
    """Sleep/wake, 3-class and 4-class agreement from four-class labels (scored epochs)."""
    t = np.asarray(truth4, dtype=np.int64)
    p = np.asarray(pred4, dtype=np.int64)
    ok = (t >= 0) & (p >= 0)
    t, p = t[ok], p[ok]
    sw = agreement((t > 0).astype(np.int64), (p > 0).astype(np.int64), TABLES["sleep_wake"])
    sw["wake_specificity"] = sw["wake"]["sensitivity"]
    return {
        "sleep_wake": sw,
        "three_class": agreement(THREE_CLASS[t], THREE_CLASS[p], TABLES["three_class"]),
        "four_class": agreement(t, p, TABLES["four_class"]),
    }


def vendor_style_summary(sleep: I8, *, onset_run_min: int = 1) -> dict[str, float | None]:
    """ActiLife-style in-bed summary from 1-min sleep (1) / wake (0) calls.

    Onset: first minute of the first run of ``onset_run_min`` consecutive sleep minutes;
    latency: in-bed to onset; TST: sleep minutes from onset to out-of-bed; WASO: wake
    minutes from onset to out-of-bed; awakenings: wake runs after onset; SE: TST / TIB.
    Unscored minutes (-1, no data) take the call of the last scored minute before them
    (the vendor saw complete data; our copy of it has holes).
    """
    s = np.asarray(sleep, dtype=np.int64)
    scored = s >= 0
    if scored.any() and not scored.all():
        last = np.maximum.accumulate(np.where(scored, np.arange(s.size), -1))
        first = int(np.argmax(scored))
        s = np.where(last >= 0, s[np.maximum(last, 0)], s[first])
    tib = float(s.size)
    is_sleep = (s == 1).astype(np.int64)
    if onset_run_min > 1 and s.size >= onset_run_min:
        run = np.convolve(is_sleep, np.ones(onset_run_min, dtype=np.int64), mode="valid")
        starts = np.flatnonzero(run == onset_run_min)
    else:
        starts = np.flatnonzero(is_sleep == 1)
    if starts.size == 0:
        return {"latency_min": None, "tst_min": 0.0, "waso_min": 0.0, "awakenings": 0.0,
                "se_pct": 0.0, "tib_min": tib}
    onset = int(starts[0])
    after = s[onset:]
    wake = (after == 0).astype(np.int8)
    bouts = int(np.sum(np.diff(np.concatenate(([0], wake))) == 1))
    tst = float(np.sum(after == 1))
    return {
        "latency_min": float(onset),
        "tst_min": tst,
        "waso_min": float(np.sum(after == 0)),
        "awakenings": float(bouts),
        "se_pct": round(100.0 * tst / tib, 2) if tib else None,
        "tib_min": tib,
    }


def summarise_errors(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Median and mean absolute error and mean bias (ours - vendor) per key."""
    out: dict[str, Any] = {}
    for k in keys:
        pairs = np.array(
            [(r["ours"][k], r["vendor"][k]) for r in rows
             if r["ours"].get(k) is not None and r["vendor"].get(k) is not None],
            dtype=np.float64,
        ).reshape(-1, 2)
        err = pairs[:, 0] - pairs[:, 1]
        out[k] = {
            "n": int(err.size),
            "median_abs_error": round(float(np.median(np.abs(err))), 2) if err.size else None,
            "mean_abs_error": round(float(np.mean(np.abs(err))), 2) if err.size else None,
            "mean_bias": round(float(np.mean(err)), 2) if err.size else None,
        }
    return out


def evaluate_walch(nights: list[WalchNight], model: StagerModel,
                   feature_set: str = "hr+motion") -> dict[str, Any]:
    """Stage every Walch subject with ``model`` using one feature set; pooled report."""
    truth, pred = [], []
    for night in nights:
        stages, _ = stage_walch(model, night, feature_set)
        truth.append(night.stages)
        pred.append(stages)
    return stage_report(np.concatenate(truth), np.concatenate(pred))


def stage_walch(model: StagerModel, night: WalchNight,
                feature_set: str) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """Stages and posteriors of one Walch night from one feature set."""
    x = walch_design(night, feature_set)
    usable: npt.NDArray[np.bool_] = np.asarray(np.isfinite(x).all(axis=1))
    stages, probs, _ = stage(model, {feature_set: x}, {feature_set: usable})
    return stages, probs


def _loso_fold(args: tuple[list[WalchNight], int, str, dict[str, Any]]) -> npt.NDArray[np.int8]:
    nights, i, feature_set, train_kwargs = args
    held = nights[i]
    others = nights[:i] + nights[i + 1 :]
    model = train_stager(others, version=f"loso-{held.subject}",
                         feature_sets=(feature_set,), **train_kwargs)
    return stage_walch(model, held, feature_set)[0]


def loso_walch(
    nights: list[WalchNight], feature_set: str = "hr+motion", *, jobs: int = 1,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Leave-one-subject-out: for each subject, train on all others (classifier,
    transitions, gains) and stage the held-out subject; pooled report over subjects.
    ``jobs`` > 1 runs folds in that many worker processes (same results)."""
    return loso_walch_sets(nights, (feature_set,), jobs=jobs, **train_kwargs)[feature_set]


def loso_walch_sets(
    nights: list[WalchNight], feature_sets: tuple[str, ...], *, jobs: int = 1,
    **train_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`loso_walch` for several feature sets, every (set, held-out subject) fold
    in one pool of ``jobs`` workers so the workers stay busy to the end."""
    tasks = [(nights, i, fs, train_kwargs) for fs in feature_sets for i in range(len(nights))]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            preds = list(pool.map(_loso_fold, tasks))
    else:
        preds = [_loso_fold(t) for t in tasks]
    truth = np.concatenate([n.stages for n in nights])
    out: dict[str, dict[str, Any]] = {}
    for j, fs in enumerate(feature_sets):
        fold_preds = preds[j * len(nights) : (j + 1) * len(nights)]
        report = stage_report(truth, np.concatenate(fold_preds).astype(np.int64))
        report["per_subject_kappa_4class"] = {
            n.subject: round(cohen_kappa(n.stages, p.astype(np.int64), 4), 4)
            for n, p in zip(nights, fold_preds, strict=True)
        }
        out[fs] = report
    return out


@dataclass(frozen=True, slots=True)
class MmashPeriod:
    """One in-bed period of an MMASH user with the vendor's figures.

    ``axis1_per_min`` holds the ActiGraph Axis1 counts of each minute from
    ``margin_min`` minutes before in-bed to ``margin_min`` after out-of-bed, so scorers
    see the same context as the vendor's. The public export lacks some 1-s rows
    (blocks of seconds, 0-47 % of a night): a minute holding at least 30 of its seconds
    has its sum scaled to 60 s, a minute with fewer is ``NaN`` (unknown).
    """

    user: str
    in_bed_s: int
    axis1_per_min: F64
    margin_min: int
    vendor: dict[str, float]


MMASH_KEYS = ("tst_min", "waso_min", "se_pct", "latency_min", "awakenings")


def compare_mmash(periods: list[MmashPeriod]) -> dict[str, Any]:
    """Sadeh and Cole-Kripke on every in-bed period vs the vendor's summary.

    Returns per scorer the per-period figures (ours and vendor's) and the median/mean
    absolute errors of TST, WASO, efficiency, latency and awakenings.
    """
    out: dict[str, Any] = {"periods": len(periods)}
    for name, scorer in (("sadeh", sadeh), ("cole_kripke", cole_kripke)):
        rows = []
        for p in periods:
            calls = scorer(p.axis1_per_min)
            inner = calls[p.margin_min : calls.size - p.margin_min]
            rows.append({
                "user": p.user,
                "in_bed_s": p.in_bed_s,
                "ours": vendor_style_summary(inner),
                "vendor": p.vendor,
            })
        out[name] = {"errors": summarise_errors(rows, MMASH_KEYS), "rows": rows}
    return out
