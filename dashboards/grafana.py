"""What Grafana does to an InfluxQL panel query and to its answer, as pure functions.

The tests use this to run every dashboard query against a real InfluxDB without a Grafana.
Each function follows a named piece of Grafana (11.x) source; behaviour, not code, is taken:

* :func:`round_interval_ms`, :func:`calculate_interval`, :func:`seconds_to_hms`,
  :func:`interval_to_ms`: ``packages/grafana-data/src/datetime/rangeutil.ts`` (``roundInterval``,
  ``calculateInterval``, ``secondsToHms``, ``describeInterval``). The panel's resolution is its
  ``maxDataPoints`` or else its width in pixels; the low limit is the panel's ``interval``.
* :func:`time_filter`: ``pkg/tsdb/influxdb/models/query.go`` ``renderTimeFilter`` +
  ``epochMStoInfluxTime``: ``time >= <from>ms and time <= <to>ms``.
* :func:`interpolate`: the template service's variable syntax (``$var``, ``${var}``,
  ``[[var]]``) with the InfluxDB data source's value formatting: a single value is inserted as
  is, several values become a regex alternation ``(a|b)`` of regex-escaped values. ``$timeFilter``,
  ``$__interval``, ``$__interval_ms`` and ``$interval`` as the InfluxDB backend replaces them.
* :func:`frames_from_influx`: the backend's InfluxQL response conversion: time series give
  one frame per series and column named by the alias pattern (``$col``, ``$tag_<key>``,
  ``$<n>``) or ``measurement.column { tags }``; table format gives one frame per query with
  ``Time``, the tag columns, then the value columns.
* :func:`variable_values`: the data source's ``ResponseParser.parse`` for query variables
  (second column of each row, first for ``SHOW FIELD KEYS``), deduplicated.
* :func:`apply_transformations`: the transformations the dashboards use (``joinByField``,
  ``groupBy``, ``organize``, ``filterFieldsByName``, ``merge``), on these frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------

_ROUND_STEPS_MS: tuple[tuple[float, int], ...] = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
"""(upper bound exclusive, rounded interval) in ms, Grafana's ``roundInterval`` table."""

_UNIT_S = {
    "y": 31_536_000,
    "M": 2_592_000,
    "w": 604_800,
    "d": 86_400,
    "h": 3_600,
    "m": 60,
    "s": 1,
    "ms": 0.001,
}
_INTERVAL_RE = re.compile(r"(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])")


class GrafanaEmulationError(ValueError):
    """A query or variable that Grafana would not turn into a valid InfluxQL statement."""


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's ``roundInterval``: snap a raw interval to a 'nice' one (ms)."""
    for upper, nice in _ROUND_STEPS_MS:
        if interval_ms < upper:
            return nice
    return 31_536_000_000


def interval_to_ms(text: str) -> int:
    """``"30s"`` -> 30000 (Grafana's ``intervalToMs``; a bare number means seconds)."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    m = _INTERVAL_RE.search(text)
    if not m:
        raise GrafanaEmulationError(f"invalid interval {text!r}: use e.g. 30s, 5m, 1h, 1d")
    return int(_UNIT_S[m.group(2)] * 1000 * int(float(m.group(1))))


def seconds_to_hms(seconds: float) -> str:
    """Grafana's ``secondsToHms``: the largest whole unit (``90`` -> ``"1m"``)."""
    years = math.floor(seconds / 31_536_000)
    if years:
        return f"{years}y"
    days = math.floor((seconds % 31_536_000) / 86_400)
    if days:
        return f"{days}d"
    hours = math.floor((seconds % 31_536_000 % 86_400) / 3_600)
    if hours:
        return f"{hours}h"
    minutes = math.floor((seconds % 31_536_000 % 86_400 % 3_600) / 60)
    if minutes:
        return f"{minutes}m"
    secs = math.floor(seconds % 31_536_000 % 86_400 % 3_600 % 60)
    if secs:
        return f"{secs}s"
    ms = math.floor(seconds * 1000.0)
    if ms:
        return f"{ms}ms"
    return "less than a millisecond"


def calculate_interval(
    from_ms: int, to_ms: int, resolution: int, low_limit: str | None = None
) -> tuple[int, str]:
    """``$__interval`` for a time range drawn at ``resolution`` points: ``(ms, text)``."""
    if resolution <= 0:
        raise GrafanaEmulationError(f"resolution must be positive, got {resolution}")
    low_ms = interval_to_ms(low_limit) if low_limit else 1
    interval_ms = round_interval_ms((to_ms - from_ms) / resolution)
    interval_ms = max(interval_ms, low_ms)
    return interval_ms, seconds_to_hms(interval_ms / 1000)


def panel_resolution(panel: Mapping[str, Any], dashboard_width_px: int = 1600) -> int:
    """``maxDataPoints`` of the panel, else its width in pixels on a dashboard that wide."""
    if panel.get("maxDataPoints"):
        return int(panel["maxDataPoints"])
    return max(1, round(panel.get("gridPos", {}).get("w", 24) * dashboard_width_px / 24))


def time_filter(from_ms: int, to_ms: int) -> str:
    """What the InfluxDB backend puts in place of ``$timeFilter``."""
    return f"time >= {from_ms}ms and time <= {to_ms}ms"


# --------------------------------------------------------------------------------------
# Template variables
# --------------------------------------------------------------------------------------

VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)
"""Grafana's template-variable syntax (``$name``, ``[[name:format]]``, ``${name.path:format}``)."""

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def escape_regex(value: str) -> str:
    """Grafana's ``escapeRegex`` (used for multi-value InfluxDB variables)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


VariableValue = str | Sequence[str]


def _format_value(name: str, value: VariableValue) -> str:
    if isinstance(value, str):
        if "'" in value or "\\" in value:
            raise GrafanaEmulationError(
                f"variable ${name} = {value!r}: Grafana inserts values unescaped, so a quote or "
                "backslash would break the InfluxQL string literal it sits in"
            )
        return value
    values = list(value)
    if not values:
        raise GrafanaEmulationError(f"variable ${name} has no value selected")
    if len(values) == 1:
        return escape_regex(values[0])
    return "(" + "|".join(escape_regex(v) for v in values) + ")"


def interpolate(
    query: str,
    variables: Mapping[str, VariableValue],
    *,
    from_ms: int,
    to_ms: int,
    interval_ms: int,
) -> str:
    """The InfluxQL Grafana sends for ``query`` with these variable values and this range.

    Raises
    ------
    GrafanaEmulationError
        A variable the dashboard does not define (Grafana would leave ``$name`` in the query
        and InfluxDB would reject it), a format this emulation does not implement, or a value
        that cannot be embedded.
    """
    builtins = {
        "timeFilter": time_filter(from_ms, to_ms),
        "__interval": seconds_to_hms(interval_ms / 1000),
        "__interval_ms": str(interval_ms),
        "interval": seconds_to_hms(interval_ms / 1000),
        "__from": str(from_ms),
        "__to": str(to_ms),
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if m.group(5):
            raise GrafanaEmulationError(f"${{{name}.{m.group(5)}}}: field paths not supported")
        if fmt not in (None, "raw", "regex"):
            raise GrafanaEmulationError(f"${name}: format {fmt!r} not supported here")
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise GrafanaEmulationError(
                f"${name} is not a variable of this dashboard (defined: "
                f"{', '.join(sorted(variables)) or 'none'})"
            )
        value = variables[name]
        if fmt == "raw" and isinstance(value, str):
            return value
        return _format_value(name, value)

    return VARIABLE_RE.sub(repl, query)


def variable_values(raw: Mapping[str, Any], query: str) -> list[str]:
    """Values of a query variable from InfluxDB's JSON answer (order kept, duplicates dropped)."""
    lowered = query.lower()
    value_first = "show field keys" in lowered or "show retention policies" in lowered
    out: dict[str, None] = {}
    for result in raw.get("results", []):
        if "error" in result:
            raise GrafanaEmulationError(f"variable query failed: {result['error']}: {query}")
        for series in result.get("series", []):
            for row in series.get("values", []):
                value = row[0] if value_first or len(row) < 2 else row[1]
                out[str(value)] = None
    return list(out)


# --------------------------------------------------------------------------------------
# Frames (Grafana's data frames, reduced to what the dashboards need)
# --------------------------------------------------------------------------------------


@dataclass
class Field:
    name: str
    values: list[Any]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Frame:
    """Named columns of equal length; ``name`` is the series' display name."""

    name: str
    fields: list[Field]
    ref_id: str = ""
    column: str = ""
    """The InfluxQL column a time-series frame came from."""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"frame {self.name!r} has no field {name!r}: {self.names()}")

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __len__(self) -> int:
        return len(self.fields[0].values) if self.fields else 0


_ALIAS_RE = re.compile(r"\$(\w+)|\[\[(\w+)\]\]")


def series_name(measurement: str, column: str, tags: Mapping[str, str], alias: str | None) -> str:
    """Display name of one (series, column) of a time-series answer."""
    if not alias:
        name = f"{measurement}.{column}"
        if tags:
            name += " { " + ", ".join(f"{k}: {v}" for k, v in sorted(tags.items())) + " }"
        return name
    segments = measurement.split(".")

    def repl(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        if key in ("m", "measurement"):
            return ""  # raw queries carry no measurement in Grafana's query model
        if key == "col":
            return column
        if key.isdigit() and int(key) < len(segments):
            return segments[int(key)]
        if key.startswith("tag_") and key[4:] in tags:
            return tags[key[4:]]
        return m.group(0)

    return _ALIAS_RE.sub(repl, alias)


def frames_from_influx(
    raw: Mapping[str, Any], *, ref_id: str, result_format: str, alias: str | None
) -> list[Frame]:
    """Grafana's frames for one query's InfluxDB JSON answer (``epoch=ms``)."""
    results = raw.get("results", [])
    frames: list[Frame] = []
    for result in results:
        if "error" in result:
            raise GrafanaEmulationError(f"query {ref_id} failed: {result['error']}")
        series = result.get("series", [])
        if result_format == "table":
            if not series:
                continue
            tag_keys = sorted({k for s in series for k in (s.get("tags") or {})})
            value_cols = [c for c in series[0]["columns"] if c != "time"]
            table: dict[str, list[Any]] = {"Time": []}
            table.update({k: [] for k in tag_keys})
            table.update({c: [] for c in value_cols})
            for s in series:
                tags = s.get("tags") or {}
                cols = s["columns"]
                for row in s.get("values", []):
                    rec = dict(zip(cols, row, strict=True))
                    table["Time"].append(rec.get("time"))
                    for k in tag_keys:
                        table[k].append(tags.get(k))
                    for c in value_cols:
                        table[c].append(rec.get(c))
            frames.append(Frame(ref_id, [Field(k, v) for k, v in table.items()], ref_id))
            continue
        for s in series:
            tags = dict(s.get("tags") or {})
            cols = s["columns"]
            times = [row[0] for row in s.get("values", [])]
            for j, column in enumerate(cols):
                if column == "time":
                    continue
                values = [row[j] for row in s.get("values", [])]
                name = series_name(s.get("name", ""), column, tags, alias)
                frames.append(
                    Frame(
                        name, [Field("Time", times), Field("Value", values, tags)], ref_id, column
                    )
                )
    return frames


# --------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------


def _join_by_field(frames: list[Frame], by: str, mode: str) -> list[Frame]:
    if len(frames) < 2:
        return frames
    keys_per_frame = [frame.field(by).values for frame in frames]
    if mode == "inner":
        common = set(keys_per_frame[0])
        for ks in keys_per_frame[1:]:
            common &= set(ks)
        keys = [k for k in keys_per_frame[0] if k in common]
    elif mode == "outer":
        keys = sorted({k for ks in keys_per_frame for k in ks if k is not None})
    else:
        raise GrafanaEmulationError(f"joinByField mode {mode!r} not emulated")
    out = [Field(by, list(keys))]
    seen: dict[str, int] = {}
    for frame in frames:
        index = {k: i for i, k in enumerate(frame.field(by).values)}
        for f in frame.fields:
            if f.name == by:
                continue
            name = f.name
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} {seen[name]}"
            out.append(Field(name, [f.values[index[k]] if k in index else None for k in keys]))
    return [Frame("joined", out)]


_REDUCERS = {
    "mean": lambda xs: sum(xs) / len(xs) if xs else None,
    "sum": lambda xs: sum(xs) if xs else None,
    "min": lambda xs: min(xs) if xs else None,
    "max": lambda xs: max(xs) if xs else None,
    "count": len,
    "last": lambda xs: xs[-1] if xs else None,
    "first": lambda xs: xs[0] if xs else None,
}


def _group_by(frames: list[Frame], options: Mapping[str, Any]) -> list[Frame]:
    spec: Mapping[str, Mapping[str, Any]] = options.get("fields", {})
    group_keys = [k for k, v in spec.items() if v.get("operation") == "groupby"]
    out: list[Frame] = []
    for frame in frames:
        names = frame.names()
        if not all(k in names for k in group_keys):
            continue
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in range(len(frame)):
            key = tuple(frame.field(k).values[i] for k in group_keys)
            groups.setdefault(key, []).append(i)
        fields = [Field(k, [key[j] for key in groups]) for j, k in enumerate(group_keys)]
        for name, v in spec.items():
            if v.get("operation") != "aggregate" or name not in names:
                continue
            values = frame.field(name).values
            for calc in v.get("aggregations", []):
                reducer = _REDUCERS[calc]
                col = []
                for rows in groups.values():
                    xs = [values[i] for i in rows if values[i] is not None]
                    col.append(reducer(xs))
                fields.append(Field(f"{name} ({calc})", col))
        out.append(Frame(frame.name, fields, frame.ref_id))
    return out


def _organize(frames: list[Frame], options: Mapping[str, Any]) -> list[Frame]:
    """Drop, reorder (``indexByName``; unlisted fields keep their order after) and rename."""
    rename: Mapping[str, str] = options.get("renameByName", {})
    exclude: Mapping[str, bool] = options.get("excludeByName", {})
    index: Mapping[str, int] = options.get("indexByName", {})
    out = []
    for f in frames:
        kept = [x for x in f.fields if not exclude.get(x.name)]
        order = {x.name: (index.get(x.name, len(index) + i)) for i, x in enumerate(kept)}
        kept.sort(key=lambda x: order[x.name])
        fields = [Field(rename.get(x.name, x.name), x.values, x.labels) for x in kept]
        out.append(Frame(f.name, fields, f.ref_id, f.column))
    return out


def _filter_fields(frames: list[Frame], options: Mapping[str, Any]) -> list[Frame]:
    drop = set(options.get("exclude", {}).get("names", []))
    keep = options.get("include", {}).get("names")
    out = []
    for f in frames:
        fields = [x for x in f.fields if x.name not in drop and (keep is None or x.name in keep)]
        out.append(Frame(f.name, fields, f.ref_id))
    return out


def _merge(frames: list[Frame]) -> list[Frame]:
    """Rows with equal values in the fields every frame has become one row (``merge``)."""
    if not frames:
        return frames
    columns: list[str] = []
    for f in frames:
        columns += [n for n in f.names() if n not in columns]
    keys = [c for c in columns if c in _key_names(frames)]
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for f in frames:
        names = f.names()
        for i in range(len(f)):
            rec = {n: f.field(n).values[i] for n in names}
            row = rows.setdefault(tuple(rec[k] for k in keys), {})
            row.update({n: v for n, v in rec.items() if v is not None})
    return [Frame("merged", [Field(c, [r.get(c) for r in rows.values()]) for c in columns])]


def _key_names(frames: list[Frame]) -> set[str]:
    """Fields present in every frame (the ones ``merge`` matches rows on)."""
    sets = [set(f.names()) for f in frames]
    return set.intersection(*sets) if sets else set()


def apply_transformations(
    frames: list[Frame], transformations: Sequence[Mapping[str, Any]]
) -> list[Frame]:
    """Apply a panel's ``transformations`` in order."""
    for t in transformations:
        tid, options = t["id"], t.get("options", {})
        if tid == "joinByField":
            frames = _join_by_field(
                frames, options.get("byField", "Time"), options.get("mode", "outer")
            )
        elif tid == "groupBy":
            frames = _group_by(frames, options)
        elif tid == "organize":
            frames = _organize(frames, options)
        elif tid == "filterFieldsByName":
            frames = _filter_fields(frames, options)
        elif tid == "merge":
            frames = _merge(frames)
        else:
            raise GrafanaEmulationError(f"transformation {tid!r} is not emulated")
    return frames
