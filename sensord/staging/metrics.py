"""Night metrics from a hypnogram, each defined here (after AASM Scoring Manual v2.6
terminology; Iber et al. 2007; Berry et al. 2020).

All durations are minutes, computed from whole 30-s epochs. Unscored epochs (code -1)
count towards time in bed but are neither sleep nor wake, so they never inflate sleep
or wake time; ``coverage`` says how much of the night was scored.

Definitions
-----------
tib_min
    Time in bed: every epoch of the hypnogram (start to end of the recording span).
tst_min
    Total sleep time: epochs staged light, deep or REM.
se_pct
    Sleep efficiency: ``100 * tst_min / tib_min``.
sol_min
    Sleep-onset latency: from the start of the hypnogram to the start of the first sleep
    epoch (AASM: sleep onset is the first epoch of any sleep stage). ``None`` if no sleep.
spt_min
    Sleep period time: from sleep onset to the end of the last sleep epoch.
waso_min
    Wake after sleep onset: wake epochs inside the sleep period.
awakenings
    Number of wake runs (one or more consecutive wake epochs) inside the sleep period.
awakening_mean_min
    Mean duration of those runs (``None`` if there are none).
rem_latency_min
    From sleep onset to the start of the first REM epoch (AASM: measured from sleep
    onset, not from lights off). ``None`` if no REM.
{stage}_min, {stage}_pct
    Minutes in each stage (wake, light, deep, rem) and the share of ``tst_min`` for
    sleep stages (share of ``tib_min`` for wake).
sfi_per_h
    Sleep fragmentation index: shifts from any sleep stage to wake plus shifts from deep
    or REM to light, per hour of ``tst_min`` -- the four-class analogue of the index of
    Haba-Rubio et al. (2004, Sleep 27:1391) that counts shifts to N1 or wake.
hr_min_bpm, hr_mean_bpm
    Minimum and mean of the per-epoch mean heart rate over sleep epochs with heart rate.
rmssd_ms
    Nocturnal RMSSD: median over sleep epochs of the 5-min-window RMSSD of each epoch.
coverage
    Fraction of epochs that were scored (0..1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError
from sensord.model import EPOCH_S
from sensord.staging.hypnogram import DEEP, LIGHT, REM, STAGE_NAMES, WAKE, Hypnogram

EPOCH_MIN = EPOCH_S / 60.0


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start indices and lengths of the runs of True in ``mask``."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return starts.astype(np.int64), (ends - starts).astype(np.int64)


def _per_epoch(
    arr: npt.NDArray[np.float64] | None, n: int, name: str
) -> npt.NDArray[np.float64] | None:
    if arr is None:
        return None
    vals = np.asarray(arr, dtype=np.float64)
    if vals.shape != (n,):
        raise StagingError(f"{name} must have one value per epoch ({n}), got shape {vals.shape}")
    return vals


def _opt(x: float | None, nd: int = 2) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def night_metrics(
    hyp: Hypnogram,
    *,
    hr_bpm: npt.NDArray[np.float64] | None = None,
    rmssd_ms: npt.NDArray[np.float64] | None = None,
) -> dict[str, Any]:
    """Compute the night metrics defined in this module's docstring.

    Parameters
    ----------
    hyp
        The night's hypnogram.
    hr_bpm
        Optional mean heart rate per epoch (``NaN`` where unknown), same length as ``hyp``.
    rmssd_ms
        Optional 5-min-window RMSSD per epoch (``NaN`` where unknown).

    Returns
    -------
    dict
        Metric name -> value (float, int or ``None`` where undefined).
    """
    st = hyp.stages.astype(np.int64)
    n = st.size
    sleep = st >= LIGHT
    tib = n * EPOCH_MIN
    tst = float(sleep.sum()) * EPOCH_MIN
    out: dict[str, Any] = {
        "tib_min": tib,
        "tst_min": tst,
        "se_pct": _opt(100.0 * tst / tib) if n else None,
    }
    sleep_idx = np.flatnonzero(sleep)
    if sleep_idx.size:
        onset, last = int(sleep_idx[0]), int(sleep_idx[-1])
        spt = st[onset : last + 1]
        starts, lengths = _runs(spt == WAKE)
        rem_idx = np.flatnonzero(st == REM)
        prev, nxt = spt[:-1], spt[1:]
        shifts = int(
            np.sum((prev >= LIGHT) & (nxt == WAKE))
            + np.sum(((prev == DEEP) | (prev == REM)) & (nxt == LIGHT))
        )
        out.update(
            sol_min=onset * EPOCH_MIN,
            spt_min=(last + 1 - onset) * EPOCH_MIN,
            waso_min=float(lengths.sum()) * EPOCH_MIN,
            awakenings=int(starts.size),
            awakening_mean_min=_opt(float(lengths.mean()) * EPOCH_MIN) if starts.size else None,
            rem_latency_min=(int(rem_idx[0]) - onset) * EPOCH_MIN if rem_idx.size else None,
            sfi_per_h=_opt(shifts / (tst / 60.0)),
        )
    else:
        out.update(
            sol_min=None,
            spt_min=0.0,
            waso_min=0.0,
            awakenings=0,
            awakening_mean_min=None,
            rem_latency_min=None,
            sfi_per_h=None,
        )
    for code, name in enumerate(STAGE_NAMES):
        minutes = float(np.sum(st == code)) * EPOCH_MIN
        out[f"{name}_min"] = minutes
        denom = tib if code == WAKE else tst
        out[f"{name}_pct"] = _opt(100.0 * minutes / denom) if denom > 0 else None
    hr = _per_epoch(hr_bpm, n, "hr_bpm")
    if hr is not None:
        v = hr[sleep & np.isfinite(hr)]
        out["hr_min_bpm"] = _opt(float(v.min())) if v.size else None
        out["hr_mean_bpm"] = _opt(float(v.mean())) if v.size else None
    rm = _per_epoch(rmssd_ms, n, "rmssd_ms")
    if rm is not None:
        v = rm[sleep & np.isfinite(rm)]
        out["rmssd_ms"] = _opt(float(np.median(v))) if v.size else None
    out["coverage"] = _opt(float(np.mean(st >= 0)), 4) if n else 0.0
    return out
