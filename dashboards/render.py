"""Draw a dashboard's panels from checked query results, without Grafana (matplotlib).

A reviewer's preview, not a Grafana clone: panels are placed on Grafana's 24-column grid (with
Grafana's upward compaction, so repeated panels push the rest down), time series honour draw
style, stacking, right axes and fixed colours from the panel's field config, state timelines
use the value mappings' texts and colours, stats and tables show units and mappings, and
dashboard annotations are drawn on every time panel as Grafana does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from dashboards import grafana as g
from dashboards.check import DashboardResult, PanelResult

NAMED = {
    "green": "#73BF69",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
}
PALETTE = [
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
]
COL_IN = 16 / 24  # inches per grid column
ROW_IN = 0.30  # inches per grid row (Grafana: 30 px rows, ~66 px columns)


def _colour(c: str | None) -> str | None:
    return NAMED.get(c, c) if c else None


def _dt(ms: Sequence[Any]) -> list[float]:
    """Epoch ms -> matplotlib date numbers (days since 1970-01-01 UTC)."""
    return [v / 86_400_000 for v in ms]


def _overrides(panel: Mapping[str, Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ov in panel.get("fieldConfig", {}).get("overrides", []):
        if ov["matcher"].get("id") == "byName" and ov["matcher"].get("options") == name:
            out.update({p["id"]: p.get("value") for p in ov["properties"]})
    return out


def _field_config(panel: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Defaults merged with by-name overrides, flattened (``custom.drawStyle`` keys)."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    cfg: dict[str, Any] = {k: v for k, v in defaults.items() if k != "custom"}
    cfg.update({f"custom.{k}": v for k, v in defaults.get("custom", {}).items()})
    cfg.update(_overrides(panel, name))
    return cfg


def _mapping_lookup(mappings: Sequence[Mapping[str, Any]], value: Any) -> tuple[str, str | None]:
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, float) and value.is_integer():
        key = str(int(value))
    for m in mappings:
        if m.get("type") == "value" and key in m.get("options", {}):
            res = m["options"][key]
            return res.get("text", key), _colour(res.get("color"))
    return key, None


UNIT_SUFFIX = {"m": " min", "percent": " %", "bpm": " bpm", "ms": " ms", "none": ""}


def format_value(value: Any, cfg: Mapping[str, Any], now_ms: int) -> str:
    """A cell or stat value as Grafana would roughly show it."""
    if value is None:
        return "-"
    text, _ = _mapping_lookup(cfg.get("mappings", []), value)
    if text != str(value) and cfg.get("mappings"):
        return text
    unit = cfg.get("unit", "")
    if isinstance(value, (bool, str)):
        return str(value)
    if unit == "dateTimeFromNow":
        if not value:
            return "never"
        hours = (now_ms - value) / 3_600_000
        return f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.1f} d ago"
    if unit == "percentunit":
        return f"{100 * value:.0f} %"
    decimals = cfg.get("decimals")
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 1
    return f"{value:.{int(decimals)}f}{UNIT_SUFFIX.get(unit, ' ' + unit if unit else '')}"


def _annotate(ax: Axes, result: DashboardResult, doc: Mapping[str, Any]) -> list[Patch]:
    handles = []
    for anno in doc.get("annotations", {}).get("list", []):
        if not anno.get("enable", True):
            continue  # off by default: Grafana draws it only once toggled on
        frames = result.annotations.get(anno["name"], [])
        colour = _colour(anno.get("iconColor")) or "#888888"
        times = [t for f in frames for t in f.field("Time").values]
        texts = [t for f in frames for t in f.field("text").values]
        short = result.to_ms - result.from_ms <= 2 * 86_400_000
        for t, text in zip(_dt(times), texts, strict=True):
            ax.axvline(t, color=colour, lw=1.2 if short else 0.6, ls="--", alpha=0.9)
            if short:  # Grafana shows the text on hover; print it where there is room
                ax.annotate(
                    str(text)[:28],
                    (t, 1.0),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    fontsize=6,
                    color=colour,
                    va="top",
                    ha="right",
                )
        if times:
            handles.append(Patch(color=colour, label=anno["name"]))
    return handles


def _time_axis(ax: Axes, result: DashboardResult) -> None:
    ax.xaxis_date(tz=UTC)
    lo, hi = _dt([result.from_ms, result.to_ms])
    ax.set_xlim(lo, hi)
    span_h = (result.to_ms - result.from_ms) / 3_600_000
    if span_h <= 36:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    else:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=UTC))
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)


def draw_timeseries(
    ax: Axes, pr: PanelResult, result: DashboardResult, doc: Mapping[str, Any]
) -> None:
    panel = pr.panel
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    right: Axes | None = None
    stack_x: list[float] | None = None
    stack_ys: list[list[float]] = []
    stack_meta: list[tuple[str, str]] = []
    for i, frame in enumerate(pr.frames):
        cfg = _field_config(panel, frame.name)
        colour = _colour(cfg.get("color", {}).get("fixedColor")) or PALETTE[i % len(PALETTE)]
        times = _dt(frame.field("Time").values)
        values = [float("nan") if v is None else v for v in frame.field("Value").values]
        target = ax
        if cfg.get("custom.axisPlacement") == "right":
            right = right or ax.twinx()
            target = right
            target.tick_params(labelsize=7)
        if stacked:
            stack_x = stack_x or times
            stack_ys.append(values)
            stack_meta.append((frame.name, colour))
            continue
        style = cfg.get("custom.drawStyle", "line")
        if style == "bars":
            steps = [b - a for a, b in itertools.pairwise(times)]
            width = min(steps) * 0.7 if steps else 0.02
            (
                target.bar(
                    times,
                    values,
                    width=width,
                    color=colour,
                    alpha=0.75,
                    label=frame.name,
                    align="edge",
                )
            )
        elif style == "points":
            (
                target.scatter(
                    times,
                    values,
                    s=cfg.get("custom.pointSize", 5) * 3,
                    color=colour,
                    label=frame.name,
                    zorder=3,
                )
            )
        else:
            marker = "o" if cfg.get("custom.showPoints") == "always" else None
            target.plot(times, values, color=colour, lw=1, label=frame.name, marker=marker, ms=3)
    if stacked and stack_x is not None:
        ax.stackplot(
            stack_x,
            stack_ys,
            colors=[c for _, c in stack_meta],
            labels=[n for n, _ in stack_meta],
            alpha=0.85,
        )
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if "min" in defaults or "max" in defaults:
        ax.set_ylim(defaults.get("min"), defaults.get("max"))
    soft_max = custom.get("axisSoftMax")
    if soft_max is not None and ax.get_ylim()[1] < soft_max:
        ax.set_ylim(top=soft_max)
    unit = defaults.get("unit", "")
    ax.set_ylabel({"m": "min", "percentunit": "fraction", "none": ""}.get(unit, unit), fontsize=7)
    _time_axis(ax, result)
    handles = _annotate(ax, result, doc)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels() if right else ([], [])
    ax.legend(  # type: ignore[call-overload]
        h1 + h2 + handles,
        l1 + l2 + [h.get_label() for h in handles],
        fontsize=6,
        loc="upper left",
        ncol=4,
        framealpha=0.7,
    )


def draw_state_timeline(
    ax: Axes, pr: PanelResult, result: DashboardResult, doc: Mapping[str, Any]
) -> None:
    seen: dict[str, str] = {}
    names = []
    for row, frame in enumerate(pr.frames):
        cfg = _field_config(pr.panel, frame.name)
        times = frame.field("Time").values
        values = frame.field("Value").values
        names.append(frame.name)
        merge = pr.panel.get("options", {}).get("mergeValues", False)
        segments: list[tuple[int, int, str, str]] = []
        for i, (t, v) in enumerate(zip(times, values, strict=True)):
            if v is None:
                continue
            end = times[i + 1] if i + 1 < len(times) else result.to_ms  # last state: to the end
            text, colour = _mapping_lookup(cfg.get("mappings", []), v)
            colour = colour or PALETTE[hash(text) % len(PALETTE)]
            seen[text] = colour
            if merge and segments and segments[-1][2] == text and segments[-1][1] == t:
                segments[-1] = (segments[-1][0], end, text, colour)
            else:
                segments.append((t, end, text, colour))
        for t0, t1, _, colour in segments:
            start_d, end_d = _dt([t0, t1])
            ax.barh(row, end_d - start_d, left=start_d, height=0.8, color=colour, lw=0)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(-0.6, len(names) - 0.4)
    _time_axis(ax, result)
    handles = [Patch(color=c, label=t) for t, c in seen.items()] + _annotate(ax, result, doc)
    ax.legend(
        handles=handles,
        fontsize=6,
        loc="lower right",
        ncol=len(handles),
        framealpha=0.8,
        bbox_to_anchor=(1.0, 1.0),
        borderaxespad=0.2,
    )


def draw_stat(ax: Axes, pr: PanelResult, result: DashboardResult) -> None:
    ax.axis("off")
    cells = []
    for frame in pr.frames:
        for f in frame.fields:
            if f.name == "Time":
                continue
            value = next((v for v in reversed(f.values) if v is not None), None)
            cells.append(
                (f.name, format_value(value, _field_config(pr.panel, f.name), result.to_ms))
            )
    n = max(len(cells), 1)
    for i, (name, text) in enumerate(cells):
        x = (i + 0.5) / n
        ax.text(
            x,
            0.55,
            text,
            ha="center",
            va="center",
            fontsize=15,
            weight="bold",
            transform=ax.transAxes,
        )
        ax.text(
            x,
            0.15,
            name,
            ha="center",
            va="center",
            fontsize=8,
            color="#555555",
            transform=ax.transAxes,
        )


def draw_table(ax: Axes, pr: PanelResult, result: DashboardResult) -> None:
    ax.axis("off")
    frames = [f for f in pr.frames if len(f)]
    if not frames:
        ax.text(0.5, 0.5, "No data", ha="center", transform=ax.transAxes)
        return
    frame = frames[0]
    fields = [f for f in frame.fields if not _field_config(pr.panel, f.name).get("custom.hidden")]
    header = [f.name for f in fields]
    rows = []
    colours = []
    for i in range(len(frame)):
        row, row_c = [], []
        for f in fields:
            cfg = _field_config(pr.panel, f.name)
            value = f.values[i]
            if f.name == "Time" and isinstance(value, int):
                row.append(datetime.fromtimestamp(value / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M"))
            else:
                row.append(format_value(value, cfg, result.to_ms))
            row_c.append(_threshold_colour(cfg, value))
        rows.append(row)
        colours.append(row_c)
    rows, colours = rows[:14], colours[:14]
    table = ax.table(
        cellText=rows, colLabels=header, cellColours=colours, loc="upper center", cellLoc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    table.scale(1, 1.25)


def _threshold_colour(cfg: Mapping[str, Any], value: Any) -> str:
    if cfg.get("custom.cellOptions", {}).get("type") != "color-background":
        return "white"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "white"
    colour = "white"
    for step in cfg.get("thresholds", {}).get("steps", []):
        if step.get("value") is None or value >= step["value"]:
            colour = _colour(step.get("color")) or colour
    return colour + "88" if colour.startswith("#") else colour


def layout(panels: Sequence[PanelResult]) -> list[tuple[PanelResult, int, int, int, int]]:
    """(panel, x, y, w, h) with Grafana's compaction: each panel rises as far as it can."""
    bottoms = [0] * 24
    placed = []
    for pr in panels:
        pos = pr.panel.get("gridPos", {})
        x, w, h = int(pos.get("x", 0)), int(pos.get("w", 24)), int(pos.get("h", 8))
        y = max(bottoms[x : x + w])
        for c in range(x, x + w):
            bottoms[c] = y + h
        placed.append((pr, x, y, w, h))
    return placed


def render_dashboard(doc: Mapping[str, Any], result: DashboardResult, path: Path) -> Path:
    """Write a PNG of the whole dashboard as these query results would draw it."""
    placed = layout(result.panels)
    rows = max(y + h for _, _, y, _, h in placed)
    header_in = 0.7
    fig_h = rows * ROW_IN + header_in
    fig = plt.figure(figsize=(24 * COL_IN, fig_h), dpi=110)
    variables = ", ".join(
        f"{k} = {v if isinstance(v, str) else ' + '.join(v)}" for k, v in result.variables.items()
    )
    span = " to ".join(
        datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
        for t in (result.from_ms, result.to_ms)
    )
    fig.text(0.01, 1 - 0.25 / fig_h, doc.get("title", ""), fontsize=14, weight="bold", va="top")
    fig.text(
        0.01, 1 - 0.52 / fig_h, f"{span} UTC    {variables}", fontsize=8, va="top", color="#444444"
    )
    for pr, x, y, w, h in placed:
        pad_x, pad_top, pad_bottom = 0.45, 0.35, 0.45
        left = (x * COL_IN + pad_x) / (24 * COL_IN)
        width = (w * COL_IN - pad_x - 0.15) / (24 * COL_IN)
        top = (y * ROW_IN + header_in + pad_top) / fig_h
        height = (h * ROW_IN - pad_top - pad_bottom) / fig_h
        ax = fig.add_axes((left, 1 - top - height, width, height))
        ax.set_title(pr.title, fontsize=9, loc="left", weight="bold")
        ptype = pr.panel.get("type")
        if not any(len(f) for f in pr.frames):
            ax.axis("off")
            ax.text(0.5, 0.5, "No data", ha="center", transform=ax.transAxes)
        elif ptype == "timeseries":
            draw_timeseries(ax, pr, result, doc)
        elif ptype == "state-timeline":
            draw_state_timeline(ax, pr, result, doc)
        elif ptype == "stat":
            draw_stat(ax, pr, result)
        elif ptype == "table":
            draw_table(ax, pr, result)
        else:
            raise g.GrafanaEmulationError(f"no renderer for panel type {ptype!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
