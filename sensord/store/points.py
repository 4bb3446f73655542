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
    names = np.array(list(schema.STAGE_CODES), dtype=object)
    by_code = {v: i for i, v in enumerate(schema.STAGE_CODES.values())}
    lookup = np.full(5, -1, dtype=np.int64)
    for code, idx in by_code.items():
        lookup[code + 1] = idx
    if codes.size and (codes.min() < -1 or codes.max() > 3):
        bad = int(codes[(codes < -1) | (codes > 3)][0])
        raise schema.SchemaError(f"unknown stage code {bad}", measurement="epoch", key="stage_code")
    fields: dict[str, Any] = {
        "stage": names[lookup[codes + 1]],
        "stage_code": codes,
        "final": np.full(t.size, final),
        "night": np.full(t.size, night, dtype=object),
    }
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64).reshape(t.size, 4)
        for j, key in enumerate(("p_wake", "p_light", "p_deep", "p_rem")):
            fields[key] = p[:, j]
    return schema_columns("epoch", {"participant": participant, "scorer": scorer}, t, fields)


def epoch_feature_lines(
    participant: str, scorer: str, t_ns: npt.ArrayLike, features: Mapping[str, npt.ArrayLike]
) -> bytes:
    """``epoch_features`` points; ``features`` keys are schema field names."""
    tags = {"participant": participant, "scorer": scorer}
    return schema_columns("epoch_features", tags, t_ns, features)


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
