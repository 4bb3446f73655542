"""A decoded night's store points: samples, device events, coverage, epochs, summary.

Pure: a decoded session in, line-protocol bytes and rows out. The same session gives the
same points (timestamps and tags from the log, the scorer version from the model), so
writing them twice overwrites instead of duplicating. Shared by ``sensord backfill``
(:mod:`sensord.store.backfill`) and the daemon's end-of-night re-score, which imports
only this and the staging core (:mod:`sensord.daemon_rescore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sensord.store import points
from sensord.store.lineproto import schema_columns, schema_line

CONNECTED_EVENTS = frozenset({"connected", "services", "subscribed", "setup"})


def night_points(
    session: Any,
    *,
    participant: str,
    tz: str,
    roles: Mapping[str, str],
    score: Callable[..., Any] | None = None,
) -> tuple[bytes, list[str], dict[str, Any] | None, dict[str, list[Any]]]:
    """All points of one decoded session: the columnar lines (split at newlines), the
    row lines (device events, the night; their string fields may hold raw newlines),
    the night summary (``None`` without scoring) and the epoch columns for the local
    store."""
    # scored first: the sample lines need not be held while the night's arrays are at
    # their peak (they come first in the body all the same)
    result = score(session.night, tz=tz) if score is not None else None
    body: list[bytes] = []
    report = session.report
    for name, dev in sorted(report.devices.items()):
        role = roles.get(name, "other")
        tags = {"participant": participant, "device_role": role}
        hr = dev.get("hr")
        if hr is not None and len(hr):
            body.append(points.heart_rate_lines(participant, role, hr))
        beats = dev.get("beats")
        if beats is not None and len(beats):
            body.append(points.beat_lines(participant, role, beats))
        battery = dev.get("battery")
        if battery is not None and len(battery):
            pct = np.asarray(battery.battery_pct, dtype=np.float64)
            ok = np.isfinite(pct)
            body.append(
                schema_columns(
                    "device_battery",
                    tags,
                    battery.t_ns[ok],
                    {"battery_pct": np.rint(pct[ok]).astype(np.int64)},
                )
            )
    events = []
    last_t: dict[str, int] = {}
    for ev in report.device_events:
        role = roles.get(ev.device, "other")
        # events of one device in the same nanosecond would overwrite each other: keep them
        # apart by 1 ns each, in log order (deterministic, so backfills stay idempotent)
        t = max(int(ev.wall_ns), last_t.get(role, -1) + 1)
        last_t[role] = t
        events.append(
            schema_line(
                "device_event",
                {"participant": participant, "device_role": role},
                {
                    "event": ev.kind,
                    "connected": ev.kind in CONNECTED_EVENTS,
                    "detail": ev.detail or None,
                },
                t,
            )
        )

    if result is None:
        return b"".join(body), events, None, {}
    hyp = result.hypnogram
    scorer = hyp.scorer
    t_ep = np.asarray(result.features["t_ns"], dtype=np.int64)
    summary = dict(result.summary)
    label = summary.get("night") or ""
    if t_ep.size:
        body.append(
            points.epoch_lines(
                participant, scorer, t_ep, hyp.stages, hyp.probabilities, final=True, night=label
            )
        )
        body.append(points.epoch_feature_lines(participant, scorer, t_ep, result.features))
        for name, dev in sorted(report.devices.items()):
            cols = {}
            for stream, key in (("hr", "hr_coverage_frac"), ("acc", "acc_coverage_frac")):
                s = dev.get(stream)
                if s is not None and len(s):
                    cols[key] = points.coverage_per_epoch(s.t_ns, t_ep)
            if cols:
                body.append(
                    points.coverage_lines(participant, roles.get(name, "other"), t_ep, cols)
                )
        summary.update(participant=participant, scorer=scorer, final=True)
        events.append(points.night_line(participant, scorer, summary))
    epochs = {
        "t_ns": t_ep.tolist(),
        "stage": np.asarray(hyp.stages, dtype=np.int64).tolist(),
        **{
            f"p_{name}": _nan_to_none(col.tolist())
            for name, col in zip(
                ("wake", "light", "deep", "rem"),
                np.asarray(hyp.probabilities, dtype=np.float64).T,
                strict=True,
            )
        },
        **{key: _nan_to_none(arr.tolist()) for key, arr in result.features.items()
           if key != "t_ns"},
    }
    return b"".join(body), events, summary, epochs


def _nan_to_none(values: list[Any]) -> list[Any]:
    """``values`` with every float NaN replaced by ``None`` (JSON has no NaN).

    ``v != v`` holds for a NaN only; tested on floats it is what ``np.isnan`` says, without
    a ufunc call per value (16 columns of a night: 26 -> 1 ms)."""
    return [None if (isinstance(v, float) and v != v) else v for v in values]
