"""Readers for the public research datasets used to validate the staging core.

I/O edge (reads files); everything it returns is plain arrays for the pure code in
:mod:`sensord.staging.validate`. Layouts are described in the data folder's README:

* Walch et al. 2019 (PhysioNet sleep-accel): ``features/<subject>_{count,hr,time,cosine}
  _feature.out`` and ``<subject>_psg_labels.out``, one row per 30-s epoch.
* MMASH (Rossi et al. 2020, PhysioNet): ``user_N/Actigraph.csv.gz`` (1-s ActiGraph
  counts with ``day`` and ``time`` columns) and ``user_N/sleep.csv`` (the vendor
  software's summary per in-bed period).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensord.errors import SensordError
from sensord.staging.train import WalchNight
from sensord.staging.validate import MmashPeriod

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

PSG_TO_STAGE = np.array([0, 1, 1, 2, 2, 3])
"""Walch PSG labels 0 wake, 1 N1, 2 N2, 3 N3, 4 N4, 5 REM -> wake/light/deep/REM."""


class DatasetError(SensordError):
    """A dataset folder is missing files or holds malformed rows (path and line named)."""


def _load_column(path: Path) -> F64:
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc


def load_walch(folder: str | Path) -> list[WalchNight]:
    """Every subject under ``folder`` (the ``walch2019`` folder or its ``features``)."""
    root = Path(folder)
    feat = root / "features" if (root / "features").is_dir() else root
    subjects = sorted(p.name.split("_")[0] for p in feat.glob("*_psg_labels.out"))
    if not subjects:
        raise DatasetError(f"{feat}: no <subject>_psg_labels.out files")
    nights = []
    for s in subjects:
        cols = {k: _load_column(feat / f"{s}_{k}_feature.out") for k in ("count", "hr", "time",
                                                                         "cosine")}
        labels = _load_column(feat / f"{s}_psg_labels.out").astype(np.int64)
        n = labels.size
        if any(c.size != n for c in cols.values()):
            raise DatasetError(f"{feat}: subject {s} has feature files of unequal length")
        if labels.min() < 0 or labels.max() > 5:
            raise DatasetError(f"{feat}: subject {s} has PSG labels outside 0..5")
        nights.append(WalchNight(s, cols["count"], cols["hr"], cols["time"], cols["cosine"],
                                 PSG_TO_STAGE[labels]))
    return nights


def _clock_s(day: str, hhmmss: str) -> int:
    parts = [int(p) for p in hhmmss.split(":")]
    while len(parts) < 3:
        parts.append(0)
    return (int(day) - 1) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


MARGIN_MIN = 10
MIN_SECONDS = 30


def load_mmash(folder: str | Path) -> list[MmashPeriod]:
    """Every in-bed period in every ``user_N/sleep.csv`` under ``folder``."""
    root = Path(folder)
    periods: list[MmashPeriod] = []
    users = sorted((p for p in root.glob("user_*") if (p / "sleep.csv").is_file()),
                   key=lambda p: int(p.name.split("_")[1]))
    if not users:
        raise DatasetError(f"{root}: no user_N/sleep.csv files")
    for user in users:
        sec, axis1 = _read_actigraph(user / "Actigraph.csv.gz")
        with open(user / "sleep.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for line, row in enumerate(rows, start=2):
            try:
                t_in = _clock_s(row["In Bed Date"], row["In Bed Time"])
                t_out = _clock_s(row["Out Bed Date"], row["Out Bed Time"])
                vendor = {
                    "latency_min": float(row["Latency"]),
                    "se_pct": float(row["Efficiency"]),
                    "tib_min": float(row["Total Minutes in Bed"]),
                    "tst_min": float(row["Total Sleep Time (TST)"]),
                    "waso_min": float(row["Wake After Sleep Onset (WASO)"]),
                    "awakenings": float(row["Number of Awakenings"]),
                }
            except (KeyError, ValueError) as exc:
                raise DatasetError(f"{user / 'sleep.csv'}:{line}: {exc}") from exc
            if t_out <= t_in:  # a few summaries date the out-of-bed time on the in-bed day
                t_out += 86400
            t0 = t_in - MARGIN_MIN * 60
            n_min = (t_out - t_in) // 60 + 2 * MARGIN_MIN
            m = (sec - t0) // 60
            sel = (sec >= t0) & (m < n_min)
            per_min = np.bincount(m[sel], weights=axis1[sel], minlength=n_min)[:n_min]
            seen = np.bincount(m[sel], minlength=n_min)[:n_min]
            # the export lacks some 1-s rows: a minute with at least half of its seconds
            # is scaled to 60 s, one with fewer is unknown
            scaled = np.where(seen >= MIN_SECONDS, per_min * 60.0 / np.maximum(seen, 1), np.nan)
            periods.append(
                MmashPeriod(user.name, t_in, scaled.astype(np.float64), MARGIN_MIN, vendor)
            )
    return periods


def _read_actigraph(path: Path) -> tuple[I64, F64]:
    try:
        with gzip.open(path, "rt", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            i_ax, i_day, i_time = header.index("Axis1"), header.index("day"), header.index("time")
            rows = [(r[i_ax], r[i_day], r[i_time]) for r in reader]
    except (OSError, ValueError, StopIteration) as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    axis1 = np.array([float(r[0]) for r in rows])
    # days are numbered 1, 2 in file order; one file numbers its second day -29, so days
    # are renumbered by order of first appearance
    day_raw = [r[1] for r in rows]
    order = {d: str(i + 1) for i, d in enumerate(dict.fromkeys(day_raw))}
    sec = np.array([_clock_s(order[r[1]], r[2]) for r in rows], dtype=np.int64)
    return sec, axis1
