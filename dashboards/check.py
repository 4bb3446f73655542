"""Run every query of a dashboard the way Grafana would, and say what a panel would miss.

:func:`check_dashboard` resolves the template variables by running their own queries, expands
every panel, repeated panel and annotation query (:func:`dashboards.grafana.interpolate`),
runs it through the ``run`` callable (InfluxQL text in, InfluxDB's JSON answer out, ``epoch=ms``),
converts the answer to Grafana frames, applies the panel's transformations and compares the
result with what the generator declared for that query (:class:`dashboards.generate.Target`):
every expected column present with at least one value of the expected kind, every ``GROUP BY``
tag present. The only I/O is ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards import grafana as g
from dashboards.generate import Kind, Target

RunQuery = Callable[[str], Mapping[str, Any]]


@dataclass
class PanelResult:
    """One drawn panel (one per value of a repeat variable)."""

    panel: Mapping[str, Any]
    title: str
    scope: dict[str, g.VariableValue]
    queries: dict[str, str] = field(default_factory=dict)
    """refId -> InfluxQL as sent."""
    frames: list[g.Frame] = field(default_factory=list)
    """After the panel's transformations."""


@dataclass
class DashboardResult:
    uid: str
    from_ms: int
    to_ms: int
    variables: dict[str, g.VariableValue] = field(default_factory=dict)
    panels: list[PanelResult] = field(default_factory=list)
    annotations: dict[str, list[g.Frame]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    queries_run: int = 0


def _kind_ok(kind: Kind, value: object) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _substitute(text: str, scope: Mapping[str, g.VariableValue]) -> str:
    """Template variables in a title or column alias, as Grafana shows them."""

    def repl(m: Any) -> str:
        value = scope.get(m.group(1) or m.group(2) or m.group(4))
        if value is None:
            return str(m.group(0))
        return value if isinstance(value, str) else ", ".join(value)

    return g.VARIABLE_RE.sub(repl, text)


def _check_target(
    target: Target,
    frames: Sequence[g.Frame],
    where: str,
    scope: Mapping[str, g.VariableValue] | None = None,
) -> list[str]:
    """Problems of one query's answer against what the panel expects."""
    if not frames or all(len(f) == 0 for f in frames):
        return [f"{where}: no data"]
    problems = []
    for declared, kind in target.columns:
        name = _substitute(declared, scope or {})
        if target.result_format == "table":
            values = [v for f in frames if name in f.names() for v in f.field(name).values]
            present = any(name in f.names() for f in frames)
        else:
            values = [v for f in frames if f.column == name for v in f.field("Value").values]
            present = any(f.column == name for f in frames)
        if not present:
            problems.append(f"{where}: column {name!r} missing")
            continue
        real = [v for v in values if v is not None]
        if not real:
            problems.append(f"{where}: column {name!r} has no values")
        elif not all(_kind_ok(kind, v) for v in real):
            bad = next(v for v in real if not _kind_ok(kind, v))
            problems.append(f"{where}: column {name!r} expected {kind}, got {bad!r}")
    for tag in target.group_tags:
        if target.result_format == "table":
            ok = any(tag in f.names() and all(f.field(tag).values) for f in frames)
        else:
            ok = all(tag in f.fields[1].labels for f in frames)
        if not ok:
            problems.append(f"{where}: series not grouped by tag {tag!r}")
    return problems


def resolve_variables(
    doc: Mapping[str, Any],
    run: RunQuery,
    from_ms: int,
    to_ms: int,
    prefer: Mapping[str, str],
    result: DashboardResult,
) -> dict[str, g.VariableValue]:
    """Values of the dashboard's variables, each from its own query (in dashboard order).

    A single-value variable takes ``prefer[name]`` when offered, else the first value; a
    multi-value one takes all values ('All').
    """
    values: dict[str, g.VariableValue] = {}
    for var in doc.get("templating", {}).get("list", []):
        name = var["name"]
        if var.get("type") in ("textbox", "constant", "custom"):
            current = var.get("current", {}).get("value")
            text = str(current if current is not None else var.get("query", ""))
            values[name] = prefer.get(name, text.split(",")[0])
            continue
        try:
            q = g.interpolate(var["query"], values, from_ms=from_ms, to_ms=to_ms, interval_ms=1000)
            options = g.variable_values(run(q), q)
        except g.GrafanaEmulationError as exc:
            result.problems.append(f"variable ${name}: {exc}")
            continue
        result.queries_run += 1
        if not options:
            result.problems.append(f"variable ${name}: its query returned no values: {q}")
            continue
        if var.get("multi"):
            values[name] = options
        else:
            values[name] = prefer[name] if prefer.get(name) in options else options[0]
    return values


def check_dashboard(
    doc: Mapping[str, Any],
    targets: Sequence[Target],
    run: RunQuery,
    *,
    from_ms: int,
    to_ms: int,
    prefer: Mapping[str, str] | None = None,
) -> DashboardResult:
    """Run everything the dashboard would run for this time range; collect problems."""
    result = DashboardResult(doc.get("uid", "?"), from_ms, to_ms)
    variables = resolve_variables(doc, run, from_ms, to_ms, prefer or {}, result)
    result.variables = variables
    by_panel: dict[str, dict[str, Target]] = {}
    for t in targets:
        by_panel.setdefault(t.panel, {})[t.ref_id] = t

    for anno in doc.get("annotations", {}).get("list", []):
        where = f"{result.uid} / annotation {anno['name']!r}"
        spec = by_panel.get(f"annotation: {anno['name']}", {}).get("Anno")
        if spec is None:
            result.problems.append(f"{where}: no declared expectations")
            continue
        try:
            q = g.interpolate(
                anno["target"]["query"], variables, from_ms=from_ms, to_ms=to_ms, interval_ms=1000
            )
            anno_frames = g.frames_from_influx(
                run(q), ref_id="Anno", result_format="table", alias=None
            )
        except g.GrafanaEmulationError as exc:
            result.problems.append(f"{where}: {exc}")
            continue
        result.queries_run += 1
        result.annotations[anno["name"]] = anno_frames
        result.problems += _check_target(spec, anno_frames, where)

    for panel in doc.get("panels", []):
        title = panel["title"]
        declared = by_panel.get(title, {})
        repeat = panel.get("repeat")
        scopes: list[dict[str, g.VariableValue]] = [{}]
        if repeat:
            chosen = variables.get(repeat)
            if chosen is None:
                result.problems.append(f"{result.uid} / {title}: repeat variable ${repeat} unset")
                continue
            scopes = [{repeat: v} for v in ([chosen] if isinstance(chosen, str) else chosen)]
        interval_ms, _ = g.calculate_interval(
            from_ms, to_ms, g.panel_resolution(panel), panel.get("interval")
        )
        for scope in scopes:
            scoped = {**variables, **scope}
            shown = _substitute(title, scope)
            pr = PanelResult(panel, shown, scope)
            frames: list[g.Frame] = []
            for target in panel.get("targets", []):
                ref = target["refId"]
                where = f"{result.uid} / {shown} / {ref}"
                spec = declared.get(ref)
                if spec is None:
                    result.problems.append(f"{where}: no declared expectations")
                    continue
                if spec.query != target["query"]:
                    result.problems.append(f"{where}: JSON query differs from the generator's")
                try:
                    q = g.interpolate(
                        target["query"],
                        scoped,
                        from_ms=from_ms,
                        to_ms=to_ms,
                        interval_ms=interval_ms,
                    )
                    got = g.frames_from_influx(
                        run(q),
                        ref_id=ref,
                        result_format=target.get("resultFormat", ""),
                        alias=target.get("alias"),
                    )
                except g.GrafanaEmulationError as exc:
                    result.problems.append(f"{where}: {exc}")
                    continue
                result.queries_run += 1
                pr.queries[ref] = q
                result.problems += _check_target(spec, got, where, scope)
                frames += got
            try:
                pr.frames = g.apply_transformations(frames, panel.get("transformations", []))
            except (g.GrafanaEmulationError, KeyError) as exc:
                result.problems.append(f"{result.uid} / {shown}: transformations: {exc}")
                pr.frames = frames
            if frames and not any(len(f) for f in pr.frames):
                result.problems.append(
                    f"{result.uid} / {shown}: nothing left after transformations"
                )
            result.panels.append(pr)
    return result
