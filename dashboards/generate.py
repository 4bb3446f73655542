"""Generate sensord's Grafana dashboards (Night, Person, Operations) as JSON.

Usage::

    python -m dashboards.generate            # rewrite dashboards/*.json
    python -m dashboards.generate --check    # exit 1 if the committed JSON is stale

Built with Grafana's typed builders (``grafana-foundation-sdk``, pinned in the ``dev`` extra,
Grafana 11.6 models). The SDK has no InfluxDB query model, so :class:`InfluxQuery` adds one
(InfluxQL raw mode, the fields Grafana's bundled InfluxDB data source reads).

Every measurement, tag and field name is looked up in :mod:`sensord.store.schema` when the
dashboards are built: a name missing from the schema raises ``KeyError`` here, and a renamed one
changes the generated JSON (``tests/test_dashboards_generate.py`` then fails until the JSON is
regenerated and the queries re-checked against a real InfluxDB).

Queries are InfluxQL only, so the dashboards work on InfluxDB 1.x, on 2.x through the v1
compatibility API (DBRP mapping) and on 3.x. The data source is referenced by the fixed uid
:data:`DATASOURCE_UID`, which the provisioning examples in ``dashboards/provisioning`` create.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    StackingConfig,
    TableSortByFieldState,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from sensord.store import schema as sch

OUT_DIR = Path(__file__).resolve().parent
DATASOURCE_UID = "sensord-influxdb"
DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
TAGS = ["sensord"]

STAGE_LABELS = {
    "wake": "Wake",
    "light": "Light",
    "deep": "Deep",
    "rem": "REM",
    "unscored": "Unscored",
}
"""Display names of :data:`sensord.store.schema.STAGES`."""

STAGE_COLOURS = {
    "wake": "#E8743B",
    "light": "#7EB3E6",
    "deep": "#1F4E9C",
    "rem": "#B04FD0",
    "unscored": "#9E9E9E",
}
"""Fixed hypnogram colours, one per stage (same in every panel and in the rendered PNGs)."""

DAY_START_DEFAULT = "6h"
"""Default of the Person dashboard's ``day_start`` variable: a study day (which a night and the
doses before it share) starts at 06:00 UTC, after waking for participants near UTC. Set it to the
participant's usual wake-up time in UTC (e.g. ``22h`` for 06:00 in UTC+8)."""

Kind = Literal["number", "string", "bool"]
ResultFormat = Literal["time_series", "table"]


# --------------------------------------------------------------------------------------
# InfluxQL query model for the SDK (it ships none for InfluxDB)
# --------------------------------------------------------------------------------------


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB data source."""

    def __init__(
        self, ref_id: str, query: str, result_format: ResultFormat, alias: str | None
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


class InfluxQueryBuilder(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, query: InfluxQuery) -> None:
        self._query = query

    def build(self) -> InfluxQuery:
        return self._query


class InfluxAnnotation(dm.AnnotationQuery):
    """Annotation query whose target is an InfluxQL query (text and tags from columns)."""

    def __init__(self, name: str, colour: str, query: str, text_column: str, tags_column: str):
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=colour)
        self.hide = None
        self.built_in = None
        self.influx_target: dict[str, object] = {
            "refId": "Anno",
            "query": query,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            "textColumn": text_column,
            "tagsColumn": tags_column,
        }

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["target"] = self.influx_target
        return out


class InfluxAnnotationBuilder(cogbuilder.Builder[dm.AnnotationQuery]):
    def __init__(self, annotation: InfluxAnnotation) -> None:
        self._annotation = annotation

    def build(self) -> dm.AnnotationQuery:
        return self._annotation


class QueryVariable(cogbuilder.Builder[dm.VariableModel]):
    """The SDK's query variable without its interval-variable keys.

    SDK 11.6.0 writes ``auto``, ``auto_min`` and ``auto_count`` on every variable; Grafana's
    own type (``@grafana/schema`` 11.6.0 ``VariableModel``) has no such keys, so the schema test
    rejects them. They only mean something for interval variables.
    """

    def __init__(
        self,
        name: str,
        label: str,
        query: str,
        *,
        refresh: dm.VariableRefresh = dm.VariableRefresh.ON_DASHBOARD_LOAD,
        sort: dm.VariableSort = dm.VariableSort.ALPHABETICAL_ASC,
        multi: bool = False,
    ) -> None:
        self._inner = (
            dash.QueryVariable(name)
            .label(label)
            .query(query)
            .datasource(DATASOURCE)
            .refresh(refresh)
            .sort(sort)
            .multi(multi)
            .include_all(multi)
        )

    def build(self) -> dm.VariableModel:
        var = self._inner.build()
        var.auto = var.auto_min = var.auto_count = None
        return var


class DayStartVariable(cogbuilder.Builder[dm.VariableModel]):
    """Text box ``day_start``: UTC offset of the study day used to pair doses with nights."""

    def build(self) -> dm.VariableModel:
        var = (
            dash.TextBoxVariable("day_start")
            .label("Day starts (UTC)")
            .description(
                "Doses and the night that follows them share a day that starts at this UTC "
                "time: the participant's usual wake-up time in UTC (6h = 06:00 UTC)."
            )
            .default_value(DAY_START_DEFAULT)
            .build()
        )
        var.auto = var.auto_min = var.auto_count = None
        return var


# --------------------------------------------------------------------------------------
# Query expectations (what each target must return; checked by the tests)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """One selected column: InfluxQL expression, output name, expected value kind."""

    expr: str
    name: str
    kind: Kind


@dataclass(frozen=True)
class Target:
    """One query of a panel, variable or annotation, with what it must return."""

    dashboard: str
    panel: str
    ref_id: str
    query: str
    result_format: ResultFormat
    columns: tuple[tuple[str, Kind], ...]
    group_tags: tuple[str, ...] = ()
    repeat: str | None = None


@dataclass
class Collector:
    """Gathers the :class:`Target` of every query while a dashboard is built."""

    dashboard: str
    targets: list[Target] = field(default_factory=list)

    def add(
        self,
        panel: str,
        ref_id: str,
        q: Query,
        result_format: ResultFormat,
        repeat: str | None = None,
    ) -> InfluxQueryBuilder:
        self.targets.append(
            Target(
                self.dashboard,
                panel,
                ref_id,
                q.text,
                result_format,
                tuple((c.name, c.kind) for c in q.cols),
                q.group_tags,
                repeat,
            )
        )
        alias = q.alias
        if alias is None and result_format == "time_series":
            # Name each series after its column (and tags) so overrides can match it.
            alias = " ".join(["$col", *(f"$tag_{t}" for t in q.group_tags)])
        return InfluxQueryBuilder(InfluxQuery(ref_id, q.text, result_format, alias))


# --------------------------------------------------------------------------------------
# InfluxQL from schema objects
# --------------------------------------------------------------------------------------


def ident(name: str) -> str:
    """InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """InfluxQL single-quoted string literal (template variables stay as written)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _kind(spec: sch.FieldSpec) -> Kind:
    if spec.type is sch.FieldType.STRING:
        return "string"
    if spec.type is sch.FieldType.BOOLEAN:
        return "bool"
    return "number"


def col(m: sch.Measurement, key: str, name: str, agg: str | None = None, scale: str = "") -> Col:
    """Column ``agg("key") scale AS "name"``; ``key`` must be a field of ``m`` in the schema.

    Aggregates (``mean``, ``sum``, ``count``, ...) yield numbers; selectors (``last``, ``max``,
    ...) and raw fields keep the schema type.
    """
    spec = m.field(key)
    expr = ident(spec.name)
    kind = _kind(spec)
    if agg == "count_distinct":
        expr, kind = f"count(distinct({expr}))", "number"
    elif agg:
        expr = f"{agg}({expr})"
        if agg in ("mean", "sum", "count", "median", "stddev", "spread"):
            kind = "number"
    if scale:
        expr = f"{expr} {scale}"
        kind = "number"
    return Col(expr, name, kind)


def tag_is(tag: sch.TagSpec, value: str) -> str:
    """``"tag" = 'value'``; a fixed value must belong to the tag's vocabulary."""
    if not value.startswith("$") and tag.values and value not in tag.values:
        raise ValueError(f"{value!r} is not a value of tag {tag.name!r}: {tag.values}")
    return f"{ident(tag.name)} = {literal(value)}"


def field_is(m: sch.Measurement, key: str, value: str) -> str:
    """``"field" = 'value'`` for a string field of ``m``."""
    spec = m.field(key)
    return f"{ident(spec.name)} = {literal(value)}"


@dataclass(frozen=True)
class Query:
    """One InfluxQL SELECT and the columns it returns."""

    text: str
    cols: tuple[Col, ...]
    group_tags: tuple[str, ...] = ()
    alias: str | None = None


def select(
    m: sch.Measurement,
    cols: Sequence[Col],
    where: Iterable[str],
    *,
    interval: str | None = None,
    group_tags: Sequence[sch.TagSpec] = (),
    fill: str | None = None,
    alias: str | None = None,
) -> Query:
    """``SELECT cols FROM m WHERE where AND $timeFilter [GROUP BY time(interval), tags]``."""
    for tag in group_tags:
        m.tag(tag.name)  # KeyError when the measurement has no such tag
    parts = [f"SELECT {', '.join(f'{c.expr} AS {ident(c.name)}' for c in cols)}"]
    parts.append(f"FROM {ident(m.name)}")
    parts.append("WHERE " + " AND ".join([*where, "$timeFilter"]))
    groups = ([f"time({interval})"] if interval else []) + [ident(t.name) for t in group_tags]
    if groups:
        parts.append("GROUP BY " + ", ".join(groups))
    if fill:
        parts.append(f"fill({fill})")
    return Query(" ".join(parts), tuple(cols), tuple(t.name for t in group_tags), alias)


def live() -> str:
    """Annotations still in force: an edit or a deletion overwrites the point with
    ``deleted = true`` (every annotation point carries the field)."""
    spec = sch.ANNOTATION.field("deleted")
    if spec.type is not sch.FieldType.BOOLEAN:
        raise TypeError(f"annotation.{spec.name} must be boolean, is {spec.type}")
    return f"{ident(spec.name)} = false"


def participant_is() -> str:
    return tag_is(sch.PARTICIPANT, "$participant")


def scorer_is() -> str:
    return tag_is(sch.SCORER, "$scorer")


# --------------------------------------------------------------------------------------
# Panel helpers
# --------------------------------------------------------------------------------------


def legend_bottom() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs([])
    )


def colour_override(name: str, colour: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": colour})]


def stage_mappings() -> list[dm.ValueMapping]:
    options = {
        stage: dm.ValueMappingResult(text=STAGE_LABELS[stage], color=STAGE_COLOURS[stage], index=i)
        for i, stage in enumerate(sch.STAGES)
    }
    return [dm.ValueMap(options=options)]


def ts_panel(title: str, description: str, unit: str, w: int, h: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .legend(legend_bottom())
        .line_width(1)
        .fill_opacity(10)
        .span_nulls(False)
    )


def table_panel(title: str, description: str, w: int, h: int) -> table.Panel:
    """A table with the options Grafana's table type requires (Grafana fills them in too)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .frame_index(0)
        .show_header(True)
        .align(common.FieldTextAlignment.AUTO)
        .cell_options(common.TableAutoCellOptions())
        .inspect(False)
    )


def merged_table(title: str, description: str, tags: dict[str, str]) -> table.Panel:
    """A full-width table merging its queries' rows by tag; ``tags`` (tag -> column title)
    lead, in that order, and the Time column is dropped."""
    return (
        table_panel(title, description, 24, 6)
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="filterFieldsByName", options={"exclude": {"names": ["Time"]}}
            )
        )
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "indexByName": {tag: i for i, tag in enumerate(tags)},
                    "renameByName": dict(tags),
                },
            )
        )
    )


def colored_cells(steps: list[tuple[float | None, str]]) -> list[dm.DynamicConfigValue]:
    """Field overrides colouring a table cell's background by absolute thresholds
    (``(lower bound, colour)``, the first bound None)."""
    return [
        dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"}),
        dm.DynamicConfigValue(
            "thresholds",
            {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]},
        ),
    ]


# --------------------------------------------------------------------------------------
# Variables and annotations shared by the dashboards
# --------------------------------------------------------------------------------------


def participant_variable() -> QueryVariable:
    q = f"SHOW TAG VALUES FROM {ident(sch.NIGHT.name)} WITH KEY = {ident(sch.PARTICIPANT.name)}"
    sch.NIGHT.tag(sch.PARTICIPANT.name)
    return QueryVariable("participant", "Participant", q)


def scorer_variable() -> QueryVariable:
    sch.EPOCH.tag(sch.SCORER.name)
    q = (
        f"SHOW TAG VALUES FROM {ident(sch.EPOCH.name)} WITH KEY = {ident(sch.SCORER.name)} "
        f"WHERE {participant_is()}"
    )
    return QueryVariable("scorer", "Scorer", q)


def pain_substance_annotations(
    c: Collector, *, enable: bool = True
) -> list[cogbuilder.Builder[dm.AnnotationQuery]]:
    """Pain ratings and substance intakes, drawn on every time panel of the dashboard."""
    a = sch.ANNOTATION
    out: list[cogbuilder.Builder[dm.AnnotationQuery]] = []
    for kind, name, colour in (("pain", "Pain", "#F2495C"), ("substance", "Substances", "#5794F2")):
        text, tags = col(a, "text", "text"), col(a, "tags", "tags")
        q = select(a, [text, tags], [participant_is(), tag_is(sch.KIND, kind), live()])
        c.add(f"annotation: {name}", "Anno", q, "table")
        anno = InfluxAnnotation(name, colour, q.text, "text", "tags")
        anno.enable = enable
        out.append(InfluxAnnotationBuilder(anno))
    return out


# --------------------------------------------------------------------------------------
# Night
# --------------------------------------------------------------------------------------


def night_dashboard() -> tuple[dash.Dashboard, list[Target]]:
    """One night of one participant: hypnogram, probabilities, cardiac, motion, devices."""
    c = Collector("night")
    n, e, ef = sch.NIGHT, sch.EPOCH, sch.EPOCH_FEATURES
    night_is = field_is(e, "night", "$night")
    d = (
        dash.Dashboard("sensord · Night")
        .uid("sensord-night")
        .description(
            "One night of one participant. Pick participant, scorer and night; set the time "
            "range to the night (the Person dashboard's nights table links here with both)."
        )
        .tags(TAGS)
        .timezone("browser")
        .time("now-24h", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(participant_variable())
        .with_variable(scorer_variable())
        .with_variable(
            QueryVariable(
                "night",
                "Night",
                f"SELECT DISTINCT({ident(n.field('night').name)}) FROM {ident(n.name)} "
                f"WHERE {participant_is()} AND {scorer_is()} AND $timeFilter",
                refresh=dm.VariableRefresh.ON_TIME_RANGE_CHANGED,
                sort=dm.VariableSort.ALPHABETICAL_DESC,
            )
        )
        .annotations(pain_substance_annotations(c))
    )

    # Night summary
    title = "Night summary"
    cols = [
        col(n, "tst_min", "TST", "last"),
        col(n, "se_pct", "Efficiency", "last"),
        col(n, "sol_min", "SOL", "last"),
        col(n, "waso_min", "WASO", "last"),
        col(n, "awakenings", "Awakenings", "last"),
        col(n, "rem_min", "REM", "last"),
        col(n, "deep_min", "Deep", "last"),
        col(n, "coverage", "Scored", "last"),
    ]
    q = select(n, cols, [participant_is(), scorer_is(), field_is(n, "night", "$night")])
    units = {
        "TST": "m",
        "SOL": "m",
        "WASO": "m",
        "REM": "m",
        "Deep": "m",
        "Efficiency": "percent",
        "Awakenings": "none",
        "Scored": "percentunit",
    }
    p = (
        stat.Panel()
        .title(title)
        .description("Night metrics (definitions in docs/staging.md) of the selected night.")
        .datasource(DATASOURCE)
        .span(24)
        .height(4)
        .with_target(c.add(title, "A", q, "table"))
        .decimals(0)
        .color_mode(common.BigValueColorMode.NONE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )
    for name, unit in units.items():
        p = p.override_by_name(name, [dm.DynamicConfigValue("unit", unit)])
    d = d.with_panel(p)

    # Hypnogram
    title = "Hypnogram"
    # one bucket per epoch, null outside the night: the last stage ends with the night
    q = select(
        e,
        [col(e, "stage", "Stage", "last")],
        [participant_is(), scorer_is(), night_is],
        interval="30s",
        fill="null",
    )
    d = d.with_panel(
        statetimeline.Panel()
        .title(title)
        .description(
            "Sleep stage of each 30-s epoch (light = N1+N2, deep = N3). Unscored: no usable "
            "sensor data in the epoch."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(5)
        .with_target(c.add(title, "A", q, "time_series"))
        .mappings(stage_mappings())
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.9)
        .legend(legend_bottom())
        .fill_opacity(90)
    )

    # Stage probabilities
    title = "Stage probabilities"
    prob_cols = [col(e, f"p_{s}", STAGE_LABELS[s]) for s in sch.STAGES if s != "unscored"]
    q = select(e, prob_cols, [participant_is(), scorer_is(), night_is])
    probs = (
        ts_panel(
            title,
            "Scorer's class probabilities per epoch (stacked; sum to 1).",
            "percentunit",
            24,
            7,
        )
        .with_target(c.add(title, "A", q, "time_series"))
        .stacking(StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(70)
        .min(0)
        .max(1)
        .interval("30s")
    )
    for s in sch.STAGES:
        if s != "unscored":
            probs = probs.override_by_name(STAGE_LABELS[s], colour_override(s, STAGE_COLOURS[s]))
    d = d.with_panel(probs)

    # Heart rate
    title = "Heart rate"
    hr = sch.HEART_RATE
    q = select(
        hr,
        [col(hr, "hr_bpm", "HR", "mean")],
        [participant_is()],
        interval="$__interval",
        group_tags=[sch.DEVICE_ROLE],
        fill="none",
        alias="HR $tag_device_role",
    )
    d = d.with_panel(
        ts_panel(title, "Heart rate per device, mean per interval.", "bpm", 12, 8)
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("1s")
    )

    # RR and HRV
    title = "RR intervals and HRV"
    b = sch.BEAT
    q_rr = select(
        b,
        [col(b, "rr_ms", "RR", "mean")],
        [participant_is()],
        interval="$__interval",
        group_tags=[sch.DEVICE_ROLE],
        fill="none",
        alias="RR $tag_device_role",
    )
    q_hrv = select(
        ef,
        [col(ef, "rmssd_ms", "RMSSD", "mean")],
        [participant_is(), scorer_is()],
        interval="$__interval",
        fill="none",
    )
    d = d.with_panel(
        ts_panel(
            title, "Mean RR interval per interval; RMSSD per 30-s epoch (right axis).", "ms", 12, 8
        )
        .with_target(c.add(title, "A", q_rr, "time_series"))
        .with_target(c.add(title, "B", q_hrv, "time_series"))
        .interval("30s")
        .override_by_name("RMSSD", [dm.DynamicConfigValue("custom.axisPlacement", "right")])
    )

    # Motion
    title = "Motion"
    q = select(
        ef,
        [
            col(ef, "counts", "Activity counts", "mean"),
            col(ef, "count_feature", "Activity feature", "mean"),
        ],
        [participant_is(), scorer_is()],
        interval="$__interval",
        fill="none",
    )
    d = d.with_panel(
        ts_panel(
            title,
            "ActiGraph activity counts per epoch; the scorer's smoothed activity feature "
            "(Walch et al. 2019, right axis).",
            "none",
            12,
            7,
        )
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("30s")
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .override_by_name(
            "Activity feature",
            [
                dm.DynamicConfigValue("custom.axisPlacement", "right"),
                dm.DynamicConfigValue("unit", "none"),
                dm.DynamicConfigValue("custom.drawStyle", "line"),
            ],
        )
    )

    # Device connection
    title = "Device connection"
    ev = sch.DEVICE_EVENT
    q = select(
        ev,
        [col(ev, "connected", "connected")],
        [participant_is()],
        group_tags=[sch.DEVICE_ROLE],
        alias="$tag_device_role",
    )
    d = d.with_panel(
        statetimeline.Panel()
        .title(title)
        .description("Connected / disconnected per device, from its connection events.")
        .datasource(DATASOURCE)
        .span(12)
        .height(7)
        .with_target(c.add(title, "A", q, "time_series"))
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "true": dm.ValueMappingResult(text="connected", color="green", index=0),
                        "false": dm.ValueMappingResult(text="disconnected", color="red", index=1),
                    }
                )
            ]
        )
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(legend_bottom())
    )

    # Coverage
    title = "Data coverage"
    cov = sch.DEVICE_COVERAGE
    q = select(
        cov,
        [
            col(cov, "hr_coverage_frac", "HR", "mean"),
            col(cov, "acc_coverage_frac", "Motion", "mean"),
        ],
        [participant_is()],
        interval="$__interval",
        group_tags=[sch.DEVICE_ROLE],
        fill="none",
        alias="$col $tag_device_role",
    )
    d = d.with_panel(
        ts_panel(
            title,
            "Fraction of each epoch with samples, per device and stream.",
            "percentunit",
            12,
            7,
        )
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("30s")
        .min(0)
        .axis_soft_max(1.05)
    )

    title = "Battery"
    bat = sch.DEVICE_BATTERY
    q = select(
        bat,
        [col(bat, "battery_pct", "Battery", "min")],
        [participant_is()],
        interval="$__interval",
        group_tags=[sch.DEVICE_ROLE],
        fill="none",
    )
    d = d.with_panel(
        ts_panel(title, "Battery level reported by each device.", "percent", 12, 7)
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("1m")
        .min(0)
        .max(100)
        .show_points(common.VisibilityMode.ALWAYS)
    )
    return d, c.targets


# --------------------------------------------------------------------------------------
# Person
# --------------------------------------------------------------------------------------


def person_dashboard() -> tuple[dash.Dashboard, list[Target]]:
    """One participant over weeks and months: metrics, substances, pain, with vs without."""
    c = Collector("person")
    n, a = sch.NIGHT, sch.ANNOTATION
    substance_var = QueryVariable(
        "substance",
        "Substance",
        f"SELECT DISTINCT({ident(a.field('substance').name)}) FROM {ident(a.name)} "
        f"WHERE {participant_is()} AND {tag_is(sch.KIND, 'substance')} AND {live()} "
        "AND $timeFilter",
        refresh=dm.VariableRefresh.ON_TIME_RANGE_CHANGED,
        multi=True,
    )
    d = (
        dash.Dashboard("sensord · Person")
        .uid("sensord-person")
        .description(
            "One participant over weeks and months (N-of-1): night metrics, substances and "
            "pain on the same time axis, and nights with versus without each substance."
        )
        .tags(TAGS)
        .timezone("browser")
        .time("now-90d", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(participant_variable())
        .with_variable(scorer_variable())
        .with_variable(substance_var)
        .with_variable(DayStartVariable())
        .annotations(pain_substance_annotations(c, enable=False))
    )
    where = [participant_is(), scorer_is()]

    def metric_panel(
        title: str, desc: str, unit: str, cols: list[Col], right: tuple[str, ...] = ()
    ) -> None:
        nonlocal d
        q = select(n, cols, where)
        p = (
            ts_panel(title, desc, unit, 12, 8)
            .with_target(c.add(title, "A", q, "time_series"))
            .show_points(common.VisibilityMode.ALWAYS)
            .point_size(5)
            .span_nulls(True)
        )
        for name in right:
            p = p.override_by_name(name, [dm.DynamicConfigValue("custom.axisPlacement", "right")])
        d = d.with_panel(p)

    metric_panel(
        "Sleep duration",
        "Total sleep time; wake after sleep onset and sleep onset latency (right axis).",
        "m",
        [col(n, "tst_min", "TST"), col(n, "waso_min", "WASO"), col(n, "sol_min", "SOL")],
        right=("WASO", "SOL"),
    )
    metric_panel(
        "Sleep architecture",
        "Minutes of REM, deep (N3) and light (N1+N2) sleep.",
        "m",
        [col(n, "rem_min", "REM"), col(n, "deep_min", "Deep"), col(n, "light_min", "Light")],
    )
    metric_panel(
        "Efficiency and awakenings",
        "Sleep efficiency (100 TST/TIB); awakenings (right axis).",
        "percent",
        [col(n, "se_pct", "Efficiency"), col(n, "awakenings", "Awakenings")],
        right=("Awakenings",),
    )
    metric_panel(
        "Nocturnal heart rate and HRV",
        "Mean and lowest HR during sleep; RMSSD (right axis).",
        "bpm",
        [
            col(n, "hr_mean_bpm", "HR mean"),
            col(n, "hr_min_bpm", "HR min"),
            col(n, "rmssd_ms", "RMSSD"),
        ],
        right=("RMSSD",),
    )

    title = "Diary: sleep quality"
    q = select(
        a,
        [col(a, "sleep_quality", "Sleep quality")],
        [participant_is(), tag_is(sch.KIND, "diary"), live()],
    )
    d = d.with_panel(
        ts_panel(title, "Morning diary rating, 1 very poor to 5 very good.", "none", 12, 7)
        .with_target(c.add(title, "A", q, "time_series"))
        .draw_style(common.GraphDrawStyle.POINTS)
        .point_size(8)
        .min(1)
        .max(5)
    )

    title = "Pain ratings"
    q = select(
        a, [col(a, "pain_nrs", "Pain NRS")], [participant_is(), tag_is(sch.KIND, "pain"), live()]
    )
    d = d.with_panel(
        ts_panel(
            title,
            "Pain intensity, numeric rating scale 0-10 (bedtime, night, morning).",
            "none",
            12,
            7,
        )
        .with_target(c.add(title, "A", q, "time_series"))
        .draw_style(common.GraphDrawStyle.POINTS)
        .point_size(8)
        .min(0)
        .max(10)
    )

    # Per substance (panels repeated for each selected substance)
    title = "Doses of $substance and pain"
    substance_is = field_is(a, "substance", "$substance")
    q_dose = select(
        a,
        [col(a, "dose", "$substance dose", "sum")],
        [participant_is(), tag_is(sch.KIND, "substance"), substance_is, live()],
        interval="1d",
        fill="none",
    )
    q_pain = select(
        a,
        [col(a, "pain_nrs", "Pain NRS (max)", "max")],
        [participant_is(), tag_is(sch.KIND, "pain"), live()],
        interval="1d",
        fill="none",
    )
    d = d.with_panel(
        ts_panel(
            title,
            "Daily total dose (UTC days) with the day's highest pain rating "
            "(right axis), on the dashboard's time axis.",
            "none",
            12,
            8,
        )
        .with_target(c.add(title, "A", q_dose, "time_series", repeat="substance"))
        .with_target(c.add(title, "B", q_pain, "time_series", repeat="substance"))
        .repeat("substance")
        .repeat_direction("v")
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .override_by_name(
            "Pain NRS (max)",
            [
                dm.DynamicConfigValue("custom.axisPlacement", "right"),
                dm.DynamicConfigValue("custom.drawStyle", "points"),
                dm.DynamicConfigValue("custom.pointSize", 8),
                dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "#F2495C"}),
            ],
        )
    )

    title = "Nights with vs without $substance"
    metrics = [
        ("tst_min", "TST"),
        ("se_pct", "Efficiency"),
        ("waso_min", "WASO"),
        ("sol_min", "SOL"),
        ("rem_min", "REM"),
        ("deep_min", "Deep"),
        ("awakenings", "Awakenings"),
        ("hr_mean_bpm", "HR mean"),
        ("rmssd_ms", "RMSSD"),
    ]
    q_nights = select(
        n,
        [col(n, key, name, "mean") for key, name in metrics],
        where,
        interval="1d, $day_start",
        fill="none",
    )
    q_taken = select(
        a,
        [
            Col(
                f"count({ident(a.field('dose').name)}) / count({ident(a.field('dose').name)})",
                "taken",
                "number",
            )
        ],
        [participant_is(), tag_is(sch.KIND, "substance"), substance_is, live()],
        interval="1d, $day_start",
        fill="0",
    )
    group_fields: dict[str, object] = {"taken": {"operation": "groupby"}}
    group_fields["TST"] = {"operation": "aggregate", "aggregations": ["count", "mean"]}
    for _, name in metrics[1:]:
        group_fields[name] = {"operation": "aggregate", "aggregations": ["mean"]}
    units = {
        "TST": "m",
        "Efficiency": "percent",
        "WASO": "m",
        "SOL": "m",
        "REM": "m",
        "Deep": "m",
        "Awakenings": "none",
        "HR mean": "bpm",
        "RMSSD": "ms",
    }
    p = (
        table_panel(
            title,
            "Mean night metrics on nights with at least one dose of the substance versus "
            "nights without, within the time range. A dose belongs to the night that starts "
            "in the same study day (from $day_start UTC). Association only: N-of-1, not "
            "randomised.",
            12,
            8,
        )
        .with_target(c.add(title, "A", q_nights, "table", repeat="substance"))
        .with_target(c.add(title, "B", q_taken, "table", repeat="substance"))
        .repeat("substance")
        .repeat_direction("v")
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="joinByField", options={"byField": "Time", "mode": "inner"}
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(id_val="groupBy", options={"fields": group_fields})
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "renameByName": {
                        "taken": "Nights",
                        "TST (count)": "Count",
                        **{f"{name} (mean)": name for _, name in metrics},
                    }
                },
            )
        )
        .decimals(1)
        .override_by_name(
            "Nights",
            [
                dm.DynamicConfigValue(
                    "mappings",
                    [
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "without a dose", "index": 0},
                                "1": {"text": "with a dose", "index": 1},
                            },
                        }
                    ],
                )
            ],
        )
        .override_by_name("Count", [dm.DynamicConfigValue("decimals", 0)])
    )
    for name, unit in units.items():
        p = p.override_by_name(name, [dm.DynamicConfigValue("unit", unit)])
    d = d.with_panel(p)

    # Nights table with links to the Night dashboard
    title = "Nights"
    q = select(
        n,
        [
            col(n, "night", "Night"),
            col(n, "tst_min", "TST"),
            col(n, "se_pct", "Efficiency"),
            col(n, "waso_min", "WASO"),
            col(n, "awakenings", "Awakenings"),
            col(n, "coverage", "Scored"),
            col(n, "end_ns", "end_ms", scale="/ 1000000"),
        ],
        where,
    )
    link = dm.DashboardLink(
        title="Open this night",
        type_val=dm.DashboardLinkType.LINK,
        url=(
            "/d/sensord-night/sensord-night?var-participant=${participant}&var-scorer=${scorer}"
            "&var-night=${__data.fields.Night}&from=${__data.fields.Time}"
            "&to=${__data.fields.end_ms}"
        ),
    )
    d = d.with_panel(
        table_panel(title, "Every night in the time range; click a night to open it.", 24, 9)
        .with_target(c.add(title, "A", q, "table"))
        .override_by_name("Night", [dm.DynamicConfigValue("links", [link])])
        .override_by_name("end_ms", [dm.DynamicConfigValue("custom.hidden", True)])
        .override_by_name("TST", [dm.DynamicConfigValue("unit", "m")])
        .override_by_name("WASO", [dm.DynamicConfigValue("unit", "m")])
        .override_by_name("Efficiency", [dm.DynamicConfigValue("unit", "percent")])
        .override_by_name("Scored", [dm.DynamicConfigValue("unit", "percentunit")])
        .sort_by([TableSortByFieldState().display_name("Time").desc(True)])
    )
    return d, c.targets


# --------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------


def operations_dashboard() -> tuple[dash.Dashboard, list[Target]]:
    """What a study coordinator checks each morning, for every participant at once."""
    c = Collector("operations")
    n, st, bat, cov = sch.NIGHT, sch.SENDER_STATUS, sch.DEVICE_BATTERY, sch.DEVICE_COVERAGE
    d = (
        dash.Dashboard("sensord · Study operations")
        .uid("sensord-operations")
        .description("Every participant's data delivery: what to check each morning.")
        .tags(TAGS)
        .timezone("browser")
        .time("now-7d", "now")
        .refresh("5m")
        .readonly()
    )
    by_p = [sch.PARTICIPANT]

    title = "Participants"
    end_ns, night_label = n.field("end_ns").name, n.field("night").name
    nights_missing = Query(
        # Calendar days between the first and the last night received, minus the nights.
        f"SELECT round(spread({ident(end_ns)}) / 86400000000000) + 1 - "
        f"count(distinct({ident(night_label)})) AS {ident('Nights missing')} "
        f"FROM {ident(n.name)} WHERE $timeFilter GROUP BY {ident(sch.PARTICIPANT.name)}",
        (Col("", "Nights missing", "number"),),
        (sch.PARTICIPANT.name,),
    )
    queries = [
        ("A", select(n, [col(n, "night", "Last night received", "last")], [], group_tags=by_p)),
        (
            "B",
            select(
                n,
                [col(n, "night", "Nights received", "count_distinct")],
                [],
                group_tags=by_p,
            ),
        ),
        ("C", nights_missing),
        (
            "D",
            select(st, [col(st, "backlog_points", "Outbox backlog", "last")], [], group_tags=by_p),
        ),
        (
            "E",
            select(st, [col(st, "quarantined_points", "Quarantined", "last")], [], group_tags=by_p),
        ),
        (
            "F",
            select(
                st,
                [col(st, "last_ok_ns", "Last successful push", "last", scale="/ 1000000")],
                [],
                group_tags=by_p,
            ),
        ),
    ]
    p = (
        merged_table(
            title,
            "Per participant: last night summary received, nights received and missing "
            "(noon-to-noon UTC days without a summary) in the time range, the Pi's outbox "
            "backlog and last successful push (reported by the Pi after each push).",
            {sch.PARTICIPANT.name: "Participant"},
        )
        .override_by_name(
            "Last successful push", [dm.DynamicConfigValue("unit", "dateTimeFromNow")]
        )
        .override_by_name(
            "Nights missing",
            colored_cells([(None, "green"), (1, "red")]),
        )
        .override_by_name(
            "Outbox backlog",
            colored_cells([(None, "green"), (10000, "orange")]),
        )
    )
    for ref, q in queries:
        p = p.with_target(c.add(title, ref, q, "table"))
    d = d.with_panel(p)

    title = "Devices"
    by_dev = [sch.PARTICIPANT, sch.DEVICE_ROLE]
    ev = sch.DEVICE_EVENT
    dev_queries = [
        ("A", select(bat, [col(bat, "battery_pct", "Battery", "last")], [], group_tags=by_dev)),
        (
            "B",
            select(
                cov,
                [col(cov, "hr_coverage_frac", "HR hours covered", "sum", scale="* 30 / 3600")],
                [],
                group_tags=by_dev,
            ),
        ),
        (
            "C",
            select(
                cov,
                [col(cov, "acc_coverage_frac", "Motion hours covered", "sum", scale="* 30 / 3600")],
                [],
                group_tags=by_dev,
            ),
        ),
        ("D", select(ev, [col(ev, "event", "Last event", "last")], [], group_tags=by_dev)),
    ]
    p = (
        merged_table(
            title,
            "Per device: last battery reading, hours covered by heart-rate and motion data in "
            "the time range (sum of per-epoch coverage x 30 s), last connection event.",
            {sch.PARTICIPANT.name: "Participant", sch.DEVICE_ROLE.name: "Device"},
        )
        .override_by_name(
            "Battery",
            [
                dm.DynamicConfigValue("unit", "percent"),
                *colored_cells([(None, "red"), (20, "orange"), (40, "green")]),
            ],
        )
        .override_by_name("HR hours covered", [dm.DynamicConfigValue("decimals", 1)])
        .override_by_name("Motion hours covered", [dm.DynamicConfigValue("decimals", 1)])
    )
    for ref, q in dev_queries:
        p = p.with_target(c.add(title, ref, q, "table"))
    d = d.with_panel(p)

    title = "Outbox backlog"
    q = select(
        st,
        [col(st, "backlog_points", "backlog", "max")],
        [],
        interval="$__interval",
        group_tags=by_p,
        fill="none",
        alias="$tag_participant",
    )
    d = d.with_panel(
        ts_panel(title, "Points waiting on each Pi after each push attempt.", "none", 12, 8)
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("1m")
    )

    title = "Battery"
    q = select(
        bat,
        [col(bat, "battery_pct", "battery", "min")],
        [],
        interval="$__interval",
        group_tags=by_dev,
        fill="none",
        alias="$tag_participant $tag_device_role",
    )
    d = d.with_panel(
        ts_panel(title, "Battery level of every device.", "percent", 12, 8)
        .with_target(c.add(title, "A", q, "time_series"))
        .interval("1m")
        .min(0)
        .max(100)
    )
    return d, c.targets


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------

BUILDERS = {
    "night": night_dashboard,
    "person": person_dashboard,
    "operations": operations_dashboard,
}


def build_all() -> tuple[dict[str, dict[str, Any]], list[Target]]:
    """All dashboards as JSON-ready dicts (keyed by file stem) and all their query targets."""
    docs: dict[str, dict[str, Any]] = {}
    targets: list[Target] = []
    for stem, fn in BUILDERS.items():
        board, ts = fn()
        docs[stem] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
        targets += ts
    return docs, targets


def render_json(doc: dict[str, Any]) -> str:
    """The exact text written to ``dashboards/<stem>.json``."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if dashboards/*.json differ")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    docs, _ = build_all()
    stale = []
    for stem, doc in docs.items():
        path = args.out / f"{stem}.json"
        text = render_json(doc)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("stale (run python -m dashboards.generate): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
