"""Reports: one night (hypnogram, probabilities, heart, motion, annotations, metrics) and
one person (N-of-1 comparisons). PNG via matplotlib (the optional ``report`` extra) and a
self-contained HTML file (the PNG inlined as a data URI, no external resources).

Rendering only: the numbers come from :mod:`sensord.nof1` and the night's stored epochs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord import annotate as an
from sensord import nof1
from sensord.errors import SensordError

h = html.escape
STAGE_NAMES = ("wake", "light", "deep", "rem")
STAGE_COLOURS = {"wake": "#e0a040", "light": "#7aa2f7", "deep": "#2a4b9b", "rem": "#c05090"}
NIGHT_METRICS = (
    ("tib_min", "Time in bed", "min"),
    ("tst_min", "Total sleep time", "min"),
    ("se_pct", "Sleep efficiency", "%"),
    ("sol_min", "Sleep-onset latency", "min"),
    ("waso_min", "Wake after sleep onset", "min"),
    ("awakenings", "Awakenings", ""),
    ("light_min", "Light sleep", "min"),
    ("deep_min", "Deep sleep", "min"),
    ("rem_min", "REM sleep", "min"),
    ("rem_latency_min", "REM latency", "min"),
    ("hr_mean_bpm", "Mean heart rate asleep", "bpm"),
    ("hr_min_bpm", "Lowest heart rate", "bpm"),
    ("rmssd_ms", "RMSSD asleep", "ms"),
    ("spt_min", "Sleep period time", "min"),
    ("sfi_per_h", "Sleep fragmentation index", "/h"),
    ("coverage", "Fraction of epochs scored", ""),
)


class ReportError(SensordError):
    """A report cannot be made (no data for the night, plotting extra missing)."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ReportError("reports need matplotlib: pip install 'sensord[report]'") from exc
    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _fmt(v: object, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    text = f"{v:.1f}" if isinstance(v, float) else str(v)
    return f"{text} {unit}".strip()


CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;
color:#1b1e27}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.92rem}
th,td{border:1px solid #d5d9e2;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.caveats{background:#fff6e0;border:1px solid #e6c36a;padding:8px 16px;border-radius:8px}
.na{color:#8a5a00}img{max-width:100%;height:auto}
.small{color:#555;font-size:.85rem}pre{white-space:pre-wrap;margin:0;font:inherit}
"""


def _html_doc(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{h(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _annotation_table(annotations: Sequence[an.Annotation], tz: str) -> str:
    if not annotations:
        return "<p>No annotations.</p>"
    rows = "".join(
        f"<tr><td>{h(_local(a.t_ns, tz).strftime('%Y-%m-%d %H:%M'))}</td><td>{h(a.kind)}</td>"
        f"<td><pre>{h(_content(a, tz))}</pre></td><td><pre>{h(_free_text(a))}</pre></td>"
        f"<td>{h(a.id)}</td></tr>"
        for a in annotations
    )
    return (
        "<table><tr><th>Local time</th><th>Kind</th><th>Annotation</th><th>Note</th>"
        f"<th>Id</th></tr>{rows}</table>"
    )


def _content(a: an.Annotation, tz: str) -> str:
    """What was entered, in words: the summary, and for a diary every item."""
    p = a.payload
    if not isinstance(p, an.Diary):
        return an.summary(a)

    def at(t_ns: int) -> str:
        return f"{_local(t_ns, tz):%H:%M}"

    return (
        f"{an.summary(a)}\ninto bed {at(p.in_bed_ns)}, tried to sleep {at(p.tried_sleep_ns)}, "
        f"asleep after {p.sol_min:g} min, {p.awakenings_n} awakenings ({p.waso_min:g} min "
        f"awake), final awakening {at(p.final_wake_ns)}, out of bed {at(p.out_of_bed_ns)}"
    )


def _free_text(a: an.Annotation) -> str:
    p = a.payload
    if isinstance(p, an.Substance):
        return p.note
    if isinstance(p, an.Diary):
        return p.comments
    if isinstance(p, an.Event):
        return p.text
    return p.body_site


def _local(t_ns: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=an.zone(tz))


# --------------------------------------------------------------------------- night
@dataclass
class NightData:
    """What the night report draws. Times UTC ns; epochs 30 s.

    ``stage_code`` uses the storage codes (wake 0, light 1, deep 2, rem 3, unscored -1);
    ``p_stage`` has columns wake, light, deep, rem (NaN when unscored); ``motion`` is
    one value per epoch (activity counts or acceleration SD), NaN when missing.
    """

    night: str
    tz: str
    epoch_t_ns: npt.NDArray[np.int64]
    stage_code: npt.NDArray[np.int64]
    p_stage: npt.NDArray[np.float64]
    motion: npt.NDArray[np.float64]
    motion_label: str = "activity"
    hr_t_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    hr_bpm: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    rr_t_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    rr_ms: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    rmssd_t_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    rmssd_ms: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    metrics: dict[str, float] = field(default_factory=dict)
    scorer: str = ""


def _floats(epochs: Mapping[str, Sequence[Any]], key: str, n: int) -> npt.NDArray[np.float64]:
    col = epochs.get(key)
    if col is None or len(col) != n:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)


def night_data_from_store(
    summary: Mapping[str, Any], epochs: Mapping[str, Sequence[Any]], tz: str
) -> NightData:
    """:class:`NightData` from a stored night summary and its epoch columns.

    Uses ``t_ns``, ``stage`` (names) or ``stage_code``, ``p_wake`` .. ``p_rem``,
    ``hr_mean_bpm``, ``rmssd_ms`` and ``activity_counts`` (else ``acc_std_g``) when
    present; absent columns are drawn empty.
    """
    t = np.asarray(epochs.get("t_ns", []), dtype=np.int64)
    n = int(t.size)
    if n == 0:
        raise ReportError(f"night {summary.get('night')} has no stored epochs to draw")
    if "stage_code" in epochs:
        codes = np.asarray(epochs["stage_code"], dtype=np.int64)
    else:
        lookup = {"wake": 0, "light": 1, "deep": 2, "rem": 3}
        codes = np.array([lookup.get(str(v), -1) for v in epochs.get("stage", [])], np.int64)
        if codes.size != n:
            codes = np.full(n, -1, np.int64)
    p = np.column_stack([_floats(epochs, f"p_{name}", n) for name in STAGE_NAMES])
    motion_key = "activity_counts" if "activity_counts" in epochs else "acc_std_g"
    metrics = {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return NightData(
        night=str(summary["night"]),
        tz=tz,
        epoch_t_ns=t,
        stage_code=codes,
        p_stage=p,
        motion=_floats(epochs, motion_key, n),
        motion_label="activity counts" if motion_key == "activity_counts" else "acc SD (g)",
        hr_t_ns=t,
        hr_bpm=_floats(epochs, "hr_mean_bpm", n),
        rmssd_t_ns=t,
        rmssd_ms=_floats(epochs, "rmssd_ms", n),
        metrics=metrics,
        scorer=str(summary.get("scorer", "")),
    )


def epoch_motion_sd(
    acc_t_ns: npt.NDArray[np.int64],
    acc_g: npt.NDArray[np.float64],
    epoch_t_ns: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Standard deviation of the acceleration magnitude (g) within each 30-s epoch.

    NaN for epochs with fewer than two samples.
    """
    n = int(epoch_t_ns.size)
    out = np.full(n, np.nan)
    if n == 0 or acc_t_ns.size == 0:
        return out
    mag = np.sqrt((np.asarray(acc_g, dtype=np.float64) ** 2).sum(axis=1))
    idx = (np.asarray(acc_t_ns) - int(epoch_t_ns[0])) // (30 * 1_000_000_000)
    ok = (idx >= 0) & (idx < n)
    idx, mag = idx[ok], mag[ok]
    cnt = np.bincount(idx, minlength=n).astype(np.float64)
    s1 = np.bincount(idx, weights=mag, minlength=n)
    s2 = np.bincount(idx, weights=mag * mag, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / cnt) / (cnt - 1)
    good = cnt >= 2
    out[good] = np.sqrt(np.maximum(var[good], 0.0))
    return out


def with_streams(data: NightData, streams: Any) -> NightData:
    """Add raw heart rate, RR intervals and motion from a session log's
    :class:`sensord.model.NightStreams`, clipped to the night's epochs."""
    if data.epoch_t_ns.size == 0:
        return data
    lo = int(data.epoch_t_ns[0])
    hi = int(data.epoch_t_ns[-1]) + 30 * 1_000_000_000

    def clip(t: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return (t >= lo) & (t < hi)

    if streams.hr is not None and len(streams.hr):
        m = clip(streams.hr.t_ns)
        data.hr_t_ns, data.hr_bpm = streams.hr.t_ns[m], streams.hr.hr_bpm[m]
    if streams.beats is not None and len(streams.beats):
        m = clip(streams.beats.t_ns)
        data.rr_t_ns, data.rr_ms = streams.beats.t_ns[m], streams.beats.rr_ms[m]
    if streams.acc is not None and len(streams.acc) and not np.isfinite(data.motion).any():
        data.motion = epoch_motion_sd(streams.acc.t_ns, streams.acc.acc_g, data.epoch_t_ns)
        data.motion_label = "acc SD (g)"
    return data


def clean_rr(
    rr_t_ns: npt.NDArray[np.int64], rr_ms: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """RR intervals kept for HRV: 300-2000 ms and within 20 % of the previous interval
    (the artefact criterion of Malik et al. 1989, Br Heart J 62:150; the first interval
    is kept if in range). Display and RMSSD only; the stored data are untouched."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    ok = (rr >= 300) & (rr <= 2000)
    prev = np.concatenate(([np.nan], rr[:-1]))
    with np.errstate(invalid="ignore"):
        jump = np.abs(rr - prev) > 0.2 * prev
    ok &= ~jump
    return np.asarray(rr_t_ns)[ok], rr[ok]


def rolling_rmssd(
    rr_t_ns: npt.NDArray[np.int64], rr_ms: npt.NDArray[np.float64], window_s: float = 300.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """RMSSD per ``window_s`` window: sqrt(mean of squared successive RR differences).

    Task Force of the ESC/NASPE, Circulation 93:1043-1065 (1996). Only differences of
    intervals that follow each other directly count (a difference across a removed
    artefact or a gap over 3 s is skipped). Windows with fewer than 10 differences are NaN.
    """
    if rr_ms.size < 2:
        return np.zeros(0, np.int64), np.zeros(0)
    t_all = np.asarray(rr_t_ns, dtype=np.int64)
    d = np.diff(rr_ms)
    t = t_all[1:]
    # consecutive: the later beat ends one interval after the earlier (within 3 s slack)
    step_ms = np.diff(t_all) / 1e6
    adjacent = np.abs(step_ms - rr_ms[1:]) < 3_000
    d2 = (d * d)[adjacent]
    t = t[adjacent]
    if t.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    w_ns = int(window_s * 1e9)
    bins = (t - t[0]) // w_ns
    n_bins = int(bins[-1]) + 1
    sums = np.bincount(bins, weights=d2, minlength=n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(sums / counts)
    out[counts < 10] = np.nan
    centres = t[0] + np.arange(n_bins, dtype=np.int64) * w_ns + w_ns // 2
    return centres, out


def _robust_ylim(ax: Any, values: npt.NDArray[np.float64]) -> None:
    v = values[np.isfinite(values)]
    if v.size:
        lo, hi = np.percentile(v, [0.5, 99.5])
        pad = 0.08 * max(hi - lo, 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def night_figure_png(data: NightData, annotations: Sequence[an.Annotation]) -> bytes:
    """The five-panel night figure as PNG bytes."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    tz = an.zone(data.tz)

    def x(t_ns: npt.NDArray[np.int64]) -> list[dt.datetime]:
        return [dt.datetime.fromtimestamp(v / 1e9, tz=tz) for v in np.asarray(t_ns)]

    fig, axes = plt.subplots(
        5, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [1.3, 1, 1, 1, 0.8]}
    )
    ax_h, ax_p, ax_hr, ax_rr, ax_m = axes
    ex = x(data.epoch_t_ns)
    # hypnogram: REM drawn at the top as is customary; unscored left blank
    level = {0: 3, 3: 2, 1: 1, 2: 0}
    y = np.array([level.get(int(c), np.nan) for c in data.stage_code], dtype=float)
    ax_h.step(ex, y, where="post", color="#333", lw=1)
    for code, name in ((0, "wake"), (1, "light"), (2, "deep"), (3, "rem")):
        mask = data.stage_code == code
        ax_h.scatter(
            [e for e, m in zip(ex, mask, strict=True) if m],
            y[mask],
            s=6,
            color=STAGE_COLOURS[name],
            zorder=3,
        )
    ax_h.set_yticks([0, 1, 2, 3], ["deep", "light", "REM", "wake"])
    ax_h.set_ylim(-0.5, 3.5)
    fig.suptitle(f"Night of {data.night}" + (f" · {data.scorer}" if data.scorer else ""))
    p = np.nan_to_num(data.p_stage, nan=0.0)
    ax_p.stackplot(
        ex,
        p.T,
        labels=[n.upper() if n == "rem" else n for n in STAGE_NAMES],
        colors=[STAGE_COLOURS[n] for n in STAGE_NAMES],
        step="post",
    )
    ax_p.set_ylim(0, 1)
    ax_p.set_ylabel("stage\nprobability")
    ax_p.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4, fontsize=8, frameon=False)
    if data.hr_bpm.size:
        ax_hr.plot(x(data.hr_t_ns), data.hr_bpm, color="#c0392b", lw=0.7)
        _robust_ylim(ax_hr, data.hr_bpm)
    ax_hr.set_ylabel("heart rate\n(bpm)")
    if data.rr_ms.size:
        rr_t, rr = clean_rr(data.rr_t_ns, data.rr_ms)
        ax_rr.plot(x(rr_t), rr, ",", color="#888", alpha=0.6)
        _robust_ylim(ax_rr, rr)
        tc, rm = rolling_rmssd(rr_t, rr)
        ax_rr2 = ax_rr.twinx()
        ax_rr2.plot(x(tc), rm, color="#16a085", lw=1.5, label="RMSSD (5 min)")
        ax_rr2.set_ylabel("RMSSD (ms)", color="#16a085")
        ax_rr.set_ylabel("RR (ms)")
    elif np.isfinite(data.rmssd_ms).any():
        ax_rr.plot(x(data.rmssd_t_ns), data.rmssd_ms, color="#16a085", lw=1)
        ax_rr.set_ylabel("RMSSD per\nepoch (ms)")
    ax_m.bar(ex, np.nan_to_num(data.motion), width=30 / 86_400, color="#555", align="edge")
    ax_m.set_ylabel(data.motion_label)
    ax_m.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    colours = {"pain": "#d35400", "substance": "#8e44ad", "event": "#2c3e50", "diary": "#27ae60"}
    # every annotation of the night is drawn; the axis widens to show evening doses
    marks = sorted(
        (a for a in annotations if a.kind != "diary"), key=lambda a: (a.t_ns, a.recorded_ns)
    )
    if marks and data.epoch_t_ns.size:
        first = min(int(data.epoch_t_ns[0]), marks[0].t_ns) - 10 * 60 * 10**9
        last = max(int(data.epoch_t_ns[-1]) + 30 * 10**9, marks[-1].t_ns) + 10 * 60 * 10**9
        ax_m.set_xlim(
            dt.datetime.fromtimestamp(first / 1e9, tz=tz),
            dt.datetime.fromtimestamp(last / 1e9, tz=tz),
        )
    groups: list[list[an.Annotation]] = []
    for a in marks:  # annotations within 10 minutes share one label
        if groups and a.t_ns - groups[-1][0].t_ns <= 10 * 60 * 10**9:
            groups[-1].append(a)
        else:
            groups.append([a])
    for group in groups:
        for a in group:
            when = dt.datetime.fromtimestamp(a.t_ns / 1e9, tz=tz)
            for ax in axes:
                ax.axvline(when, color=colours[a.kind], lw=1, ls="--", alpha=0.8)
        head = group[0]
        label = " / ".join(an.summary(a)[:28] for a in group)
        ax_h.text(
            dt.datetime.fromtimestamp(head.t_ns / 1e9, tz=tz),
            1.02,
            label,
            transform=ax_h.get_xaxis_transform(),
            rotation=35,
            fontsize=7,
            ha="left",
            va="bottom",
            color=colours[head.kind],
        )
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def night_report(
    data: NightData, annotations: Sequence[an.Annotation], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``night-DATE.png`` and a self-contained ``night-DATE.html``; return paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = night_figure_png(data, annotations)
    png_path = out_dir / f"night-{data.night}.png"
    png_path.write_bytes(png)
    rows = "".join(
        f'<tr><td>{h(label)}</td><td class="num">{h(_fmt(data.metrics.get(key), unit))}</td></tr>'
        for key, label, unit in NIGHT_METRICS
        if key in data.metrics
    )
    body = (
        f"<h1>Night of {h(data.night)}</h1>"
        f'<p class="small">Times in {h(data.tz)}. Scorer: {h(data.scorer or "unknown")}. '
        "Stages are estimated from a wearable's heart rate and motion, not polysomnography.</p>"
        + _img(png, f"Hypnogram, stage probabilities, heart rate, RR and motion for {data.night}")
        + f"<h2>Night metrics</h2><table><tr><th>Metric</th><th>Value</th></tr>{rows}</table>"
        + "<h2>Annotations</h2>"
        + _annotation_table(annotations, data.tz)
    )
    html_path = out_dir / f"night-{data.night}.html"
    html_path.write_text(_html_doc(f"Night {data.night}", body), encoding="utf-8")
    return png_path, html_path


# --------------------------------------------------------------------------- person
def _effect_rows(rows: Sequence[nof1.Comparison]) -> str:
    out = []
    for c in rows:
        e = c.effect
        u = c.metric.unit
        if e.enough:
            est = f"{e.diff:+.1f} {u}".strip()
            ci = f"{e.ci_low:+.1f} to {e.ci_high:+.1f}"
            cls = ""
        else:
            est, ci, cls = "not enough nights", "", ' class="na"'
        out.append(
            f"<tr><td>{h(c.contrast)}</td><td>{h(c.metric.label)}</td>"
            f'<td class="num">{h(_fmt(e.mean_exposed, u))}</td>'
            f'<td class="num">{h(_fmt(e.mean_unexposed, u))}</td>'
            f"<td{cls}>{h(est)}</td><td>{h(ci)}</td>"
            f'<td class="num">{e.n_exposed} / {e.n_unexposed}</td></tr>'
        )
    head = (
        "<tr><th>Comparison</th><th>Metric</th><th>Mean (exposed)</th><th>Mean (other)</th>"
        "<th>Difference</th><th>95% CI</th><th>Nights</th></tr>"
    )
    return f"<table>{head}{''.join(out)}</table>" if out else "<p>None.</p>"


def forest_png(rows: Sequence[nof1.Comparison], title: str) -> bytes | None:
    """Point estimates with intervals, one panel per metric that has any estimate."""
    usable = [c for c in rows if c.effect.enough]
    if not usable:
        return None
    plt = _pyplot()
    metrics = [m for m in nof1.METRICS if any(c.metric == m for c in usable)]
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(2.4 * len(metrics) + 1.5, 0.45 * (len(usable) // len(metrics)) + 1.8),
        squeeze=False,
    )
    for ax, m in zip(axes[0], metrics, strict=True):
        cs = [c for c in usable if c.metric == m]
        ys = np.arange(len(cs))[::-1]
        for yy, c in zip(ys, cs, strict=True):
            e = c.effect
            ax.plot([e.ci_low, e.ci_high], [yy, yy], color="#2f5bd3", lw=2)
            ax.plot([e.diff], [yy], "o", color="#2f5bd3")
        ax.axvline(0, color="#999", lw=1)
        ax.set_title(f"{m.label}" + (f" ({m.unit})" if m.unit else ""), fontsize=9)
        ax.set_yticks(ys, [c.exposure for c in cs] if ax is axes[0][0] else [""] * len(cs))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def person_summary_json(analysis: nof1.PersonAnalysis) -> dict[str, Any]:
    """The effect estimates as plain data (written next to the HTML for re-use)."""

    def conv(rows: Sequence[nof1.Comparison]) -> list[dict[str, Any]]:
        out = []
        for c in rows:
            e = c.effect
            out.append(
                {
                    "exposure": c.exposure,
                    "contrast": c.contrast,
                    "metric": c.metric.key,
                    "unit": c.metric.unit,
                    "n_exposed": e.n_exposed,
                    "n_unexposed": e.n_unexposed,
                    "mean_exposed": None if math.isnan(e.mean_exposed) else e.mean_exposed,
                    "mean_unexposed": None if math.isnan(e.mean_unexposed) else e.mean_unexposed,
                    "diff": e.diff if e.enough else None,
                    "ci_low": e.ci_low if e.enough else None,
                    "ci_high": e.ci_high if e.enough else None,
                    "enough": e.enough,
                    "text": e.describe(c.metric.unit),
                }
            )
        return out

    return {
        "nights": len(analysis.table),
        "same_night": conv(analysis.same_night),
        "next_night": conv(analysis.next_night),
        "dose_bands": conv(analysis.dose_bands),
        "pain_bands": conv(analysis.pain_bands),
        "pain_slopes": [
            {
                "metric": t.metric.key,
                "n": t.slope.n,
                "slope_per_point": t.slope.slope if t.slope.enough else None,
                "ci_low": t.slope.ci_low if t.slope.enough else None,
                "ci_high": t.slope.ci_high if t.slope.enough else None,
                "enough": t.slope.enough,
            }
            for t in analysis.pain_trends
        ],
        "caveats": list(nof1.CAVEATS),
    }


def person_text(analysis: nof1.PersonAnalysis) -> str:
    """The headline effects in plain text (what the CLI prints)."""
    lines = [f"{len(analysis.table)} nights."]
    for title, rows in (
        ("Same night", analysis.same_night),
        ("Next night", analysis.next_night),
        ("Dose bands", analysis.dose_bands),
        ("Bedtime pain", analysis.pain_bands),
    ):
        if not rows:
            continue
        lines.append(f"{title}:")
        for c in rows:
            lines.append(f"  {c.contrast}: {c.metric.label}: {c.effect.describe(c.metric.unit)}")
    lines.append("Caveats:")
    lines += [f"  - {c}" for c in nof1.CAVEATS]
    return "\n".join(lines)


def person_report(
    analysis: nof1.PersonAnalysis,
    annotations: Sequence[an.Annotation],
    *,
    participant: str,
    tz: str,
    out_dir: Path,
    span: str,
) -> Path:
    """Write ``person.html`` (self-contained), ``person.json`` and forest PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metric_keys = [m for m in nof1.METRICS]
    head = (
        "<tr><th>Night</th>"
        + "".join(
            f"<th>{h(m.label)}{' (' + h(m.unit) + ')' if m.unit else ''}</th>" for m in metric_keys
        )
        + "<th>Bedtime pain</th><th>Substances</th></tr>"
    )
    body_rows = []
    for row in analysis.table:
        cells = "".join(f'<td class="num">{h(_fmt(row.get(m.key)))}</td>' for m in metric_keys)
        body_rows.append(
            f"<tr><td>{h(str(row['night']))}</td>{cells}"
            f'<td class="num">{h(_fmt(row.get("bedtime_pain")))}</td>'
            f"<td>{h(str(row.get('substances', '')))}</td></tr>"
        )
    caveats = "".join(f"<li>{h(c)}</li>" for c in nof1.CAVEATS)
    parts = [
        f"<h1>Sleep, substances and pain: {h(participant)}</h1>",
        f'<p class="small">{h(span)} · {len(analysis.table)} nights · times in {h(tz)}. '
        "Differences are mean(exposed nights) minus mean(other nights) with 95% percentile "
        f"bootstrap intervals ({nof1.N_BOOT} resamples, seeded). A group needs at least "
        f"{nof1.MIN_NIGHTS} nights; otherwise the report says “not enough nights”.</p>",
        f'<div class="caveats"><strong>Read with care</strong><ul>{caveats}</ul></div>',
    ]
    for title, rows, note in (
        (
            "Substance taken that evening (same night)",
            analysis.same_night,
            "A dose counts for the night that starts on the day it was taken.",
        ),
        (
            "The night after (next-night effects)",
            analysis.next_night,
            "Nights right after a night with the substance, without it themselves, versus "
            "nights with neither.",
        ),
        ("By dose", analysis.dose_bands, "Doses split at the participant's median dose."),
        (
            "Bedtime pain",
            analysis.pain_bands,
            "Bands after Serlin et al. 1995; compared with nights of pain 0-4.",
        ),
    ):
        parts.append(f"<h2>{h(title)}</h2><p class='small'>{h(note)}</p>")
        png = forest_png(rows, title)
        if png is not None:
            slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower())[:40]
            (out_dir / f"person-{slug}.png").write_bytes(png)
            parts.append(_img(png, f"Effect estimates: {title}"))
        parts.append(_effect_rows(rows))
    slope_rows = "".join(
        f"<tr><td>{h(t.metric.label)}</td><td>"
        + (
            f"{t.slope.slope:+.2f} {h(t.metric.unit)} per point (95% CI {t.slope.ci_low:+.2f} to "
            f"{t.slope.ci_high:+.2f})"
            if t.slope.enough
            else "not enough nights"
        )
        + f'</td><td class="num">{t.slope.n}</td></tr>'
        for t in analysis.pain_trends
    )
    parts.append(
        "<h2>Per point of bedtime pain</h2><table><tr><th>Metric</th><th>Slope</th>"
        f"<th>Nights</th></tr>{slope_rows}</table>"
    )
    parts.append(f"<h2>Nights</h2><table>{head}{''.join(body_rows)}</table>")
    parts.append("<h2>Annotations</h2>" + _annotation_table(annotations, tz))
    html_path = out_dir / "person.html"
    html_path.write_text(
        _html_doc(f"N-of-1 report {participant}", "\n".join(parts)), encoding="utf-8"
    )
    (out_dir / "person.json").write_text(
        json.dumps(person_summary_json(analysis), indent=1, ensure_ascii=False), encoding="utf-8"
    )
    return html_path
