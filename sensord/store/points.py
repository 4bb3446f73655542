"""Streams and results -> line protocol, with the schema's names. Pure.

The one place where sensord's data types meet the InfluxDB schema: the daemon, the
backfill command and the benchmarks all call these, so a night stored live and a night
backfilled from its session log are the same points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.model import BeatStream, HeartRateStream
from sensord.staging.epochs import EpochGrid, second_coverage
from sensord.store import schema
from sensord.store.lineproto import schema_columns, schema_line


def heart_rate_lines(participant: str, role: str, hr: HeartRateStream) -> bytes:
    """``heart_rate`` points, one per sample (NaN heart rates are left out)."""
    tags = {"participant": participant, "device_role": role}
    return schema_columns("heart_rate", tags, hr.t_ns, {"hr_bpm": hr.hr_bpm})


def beat_lines(participant: str, role: str, beats: BeatStream) -> bytes:
    """``beat`` points at the reconstructed beat times."""
    tags = {"participant": participant, "device_role": role}
    return schema_columns("beat", tags, beats.t_ns, {"rr_ms": beats.rr_ms})


def epoch_lines(
    participant: str,
    scorer: str,
    t_ns: npt.ArrayLike,
    stage_code: npt.ArrayLike,
    proba: npt.ArrayLike | None,
    *,
    final: bool,
    night: str,
) -> bytes:
    """``epoch`` points.

    Parameters
    ----------
    t_ns
        Epoch starts (multiples of 30 s), int64 ns.
    stage_code
        :data:`schema.STAGE_CODES` values (-1 = unscored).
    proba
        ``(n, 4)`` probabilities of wake, light, deep, REM (NaN rows for unscored
        epochs), or ``None``.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    codes = np.asarray(stage_code, dtype=np.int64)
    rows = codes + 1  # rows of _STAGE_BY_CODE; as unsigned, codes below -1 wrap past 4
    if np.count_nonzero(rows.view(np.uint64) > 4):
        bad = int(codes[(codes < -1) | (codes > 3)][0])
        raise schema.SchemaError(f"unknown stage code {bad}", measurement="epoch", key="stage_code")
    fields: dict[str, Any] = {
        "stage": _STAGE_BY_CODE[rows],
        "stage_code": codes,
        "final": np.full(t.size, final, dtype=bool),
        "night": np.array([night] * t.size, dtype=object),  # (np.full's dearer for a few)
    }
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64).reshape(t.size, 4)
        for j, key in enumerate(("p_wake", "p_light", "p_deep", "p_rem")):
            fields[key] = p[:, j]
    return schema_columns("epoch", {"participant": participant, "scorer": scorer}, t, fields)


_STAGE_BY_CODE = np.empty(5, dtype=object)
"""Stage name of each :data:`schema.STAGE_CODES` value plus one (-1 ... 3)."""
for _name, _code in schema.STAGE_CODES.items():
    _STAGE_BY_CODE[_code + 1] = _name


_FEATURE_TYPES = {spec.name: spec.type for spec in schema.EPOCH_FEATURES.fields}


def epoch_feature_lines(
    participant: str, scorer: str, t_ns: npt.ArrayLike, features: Mapping[str, npt.ArrayLike]
) -> bytes:
    """``epoch_features`` points from a feature dict (``score_night``'s ``features``).

    Keys that are not fields of :data:`schema.EPOCH_FEATURES` (``t_ns``) are ignored;
    integer-valued float columns are cast to the schema's type.
    """
    tags = {"participant": participant, "scorer": scorer}
    cols: dict[str, Any] = {}
    for key, values in features.items():
        ftype = _FEATURE_TYPES.get(key)
        if ftype is None:
            continue
        arr = np.asarray(values)
        if ftype is schema.FieldType.INTEGER and arr.dtype.kind not in "iu":
            arr = np.where(np.isfinite(arr), arr, 0).astype(np.int64)
        cols[key] = arr
    return schema_columns("epoch_features", tags, t_ns, cols)


def night_fields(summary: Mapping[str, Any]) -> dict[str, object]:
    """The :data:`schema.NIGHT` fields of a night summary (``score_night``'s
    ``summary`` plus ``final``); ``None`` and non-schema keys are left out, numbers are
    cast to the schema's type (``tib_min`` may come as an int)."""
    out: dict[str, object] = {}
    for spec in schema.NIGHT.fields:
        value = summary.get(spec.name)
        if value is None or isinstance(value, dict):
            continue
        if spec.type is schema.FieldType.FLOAT and isinstance(value, int | float | np.number):
            value = float(value)
        elif spec.type is schema.FieldType.INTEGER and isinstance(value, int | np.integer):
            value = int(value)
        out[spec.name] = value
    return out


def night_line(participant: str, scorer: str, summary: Mapping[str, Any]) -> str:
    """The ``night`` point of a summary (timestamp: ``start_ns``)."""
    return schema_line(
        "night",
        {"participant": participant, "scorer": scorer},
        night_fields(summary),
        int(summary["start_ns"]),
    )


def coverage_per_epoch(t_ns: npt.ArrayLike, epoch_t_ns: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Fraction of each epoch's seconds that hold at least one sample; ``epoch_t_ns`` are
    consecutive 30-s epochs (:func:`sensord.staging.epochs.second_coverage`)."""
    ep = np.asarray(epoch_t_ns, dtype=np.int64)
    if ep.size == 0:
        return np.zeros(0)
    return second_coverage(EpochGrid(int(ep[0]), int(ep.size)), np.asarray(t_ns))


def coverage_lines(
    participant: str, role: str, t_ns: npt.ArrayLike, fields: Mapping[str, npt.ArrayLike]
) -> bytes:
    """``device_coverage`` points per epoch and device."""
    tags = {"participant": participant, "device_role": role}
    return schema_columns("device_coverage", tags, t_ns, fields)


def battery_line(participant: str, role: str, t_ns: int, battery_pct: int) -> str:
    tags = {"participant": participant, "device_role": role}
    return schema_line("device_battery", tags, {"battery_pct": battery_pct}, t_ns)


def device_event_line(
    participant: str, role: str, t_ns: int, event: str, *, connected: bool, detail: str = ""
) -> str:
    tags = {"participant": participant, "device_role": role}
    fields: dict[str, object] = {"event": event, "connected": connected}
    if detail:
        fields["detail"] = detail
    return schema_line("device_event", tags, fields, t_ns)


def sender_status_line(
    participant: str,
    t_ns: int,
    *,
    backlog_points: int,
    quarantined_points: int,
    push_ok: bool,
    last_ok_ns: int,
) -> str:
    """``sender_status`` point queued after a push attempt (read by the operations dashboard).

    The daemon queues one as each push starts (``Daemon._queue_sender_status``); it reaches
    InfluxDB with that push, or the next successful one.
    """
    fields: dict[str, object] = {
        "backlog_points": backlog_points,
        "quarantined_points": quarantined_points,
        "push_ok": push_ok,
        "last_ok_ns": last_ok_ns,
    }
    return schema_line("sender_status", {"participant": participant}, fields, t_ns)
