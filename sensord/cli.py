"""Command-line interface (typer). Thin: parse options, call the library, print.

Every command catches :class:`sensord.errors.SensordError` at this edge and exits
with status 2 and a one-line message instead of a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from sensord import __version__
from sensord.cli_common import fail, masked
from sensord.errors import ConfigError, LogFormatError, SensordError

app = typer.Typer(
    name="sensord",
    help="Sleep-sensor ingestion: BLE wearables -> session logs -> sleep staging -> InfluxDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the sensord version."""
    typer.echo(__version__)


# --- store (issue 4): push, outbox, doctor, backfill -----------------------------------

_CONFIG_OPT = typer.Option(
    None, "--config", "-c", help="TOML config file (default: $SENSORD_CONFIG or /etc/sensord)."
)


@app.command()
def push(
    config: Path | None = _CONFIG_OPT,
    retries: int = typer.Option(3, help="Retries of transient failures before giving up."),
) -> None:
    """Send the local outbox to InfluxDB now, showing progress."""
    from sensord.config import load_config
    from sensord.store import service

    def progress(r: service.FlushReport) -> None:
        typer.echo(f"sent {r.sent_lines} lines, {r.pending_lines} left", err=True)

    try:
        cfg = load_config(config)
        report = service.push(cfg, retries=retries, on_progress=progress)
    except SensordError as exc:
        raise fail(exc) from None
    typer.echo(
        f"pushed {report.sent_lines} lines in {report.requests} requests "
        f"({report.seconds:.1f} s); quarantined {report.quarantined}; "
        f"{report.pending_lines} left in the outbox"
    )
    if not report.finished:
        why = masked(report.last_error)
        typer.echo(f"error: gave up after {report.retries} retries: {why}", err=True)
        raise typer.Exit(1)


@app.command()
def outbox(
    config: Path | None = _CONFIG_OPT,
    limit: int = typer.Option(20, help="Quarantined lines to show."),
    retry_quarantine: bool = typer.Option(
        False, "--retry-quarantine", help="Move quarantined lines back to the outbox."
    ),
) -> None:
    """Show the backlog, the last success and the lines the server refused."""
    from sensord.config import load_config
    from sensord.store import service

    try:
        cfg = load_config(config)
        with service.open_store(cfg) as store:
            if retry_quarantine:
                typer.echo(f"re-queued {store.retry_quarantine()} quarantined lines")
            typer.echo(service.outbox_report(store, limit=limit))
    except SensordError as exc:
        raise fail(exc) from None


@app.command()
def doctor(config: Path | None = _CONFIG_OPT) -> None:
    """Check the Pi and InfluxDB: adapter, BlueZ, permissions, clock, disk, sink."""
    from sensord.config import load_config
    from sensord.daemon_ops import doctor_checks
    from sensord.store import service

    try:
        cfg = load_config(config)
        radio_ok, radio_lines = doctor_checks(cfg)  # area daemon: adapter, BlueZ, clock, disk
        report = service.doctor(cfg)
    except SensordError as exc:
        raise fail(exc) from None
    for line in [*radio_lines, *report.lines]:
        typer.echo(line)
    if not (report.ok and radio_ok):
        raise typer.Exit(1)


@app.command()
def backfill(
    logs: list[Path] = typer.Argument(..., help="Session logs (.blelog), one per night."),
    config: Path | None = _CONFIG_OPT,
    participant: str | None = typer.Option(
        None, help="Participant id (default: the log header's, else the config's)."
    ),
    no_scoring: bool = typer.Option(
        False, "--no-scoring", help="Decoded samples and device status only."
    ),
    queue_only: bool = typer.Option(
        False, "--queue-only", help="Only queue in the outbox; send later with `sensord push`."
    ),
) -> None:
    """Re-derive everything from session logs and write it to InfluxDB (idempotent)."""
    from sensord.config import load_config
    from sensord.store import service
    from sensord.store.backfill import NightBackfill
    from sensord.store.backfill import backfill as run_backfill
    from sensord.store.sinks import make_sink

    def show(n: NightBackfill) -> None:
        sent = (
            f"sent {n.sent.sent_lines}, quarantined {n.sent.quarantined}"
            if n.sent is not None
            else "queued"
        )
        typer.echo(
            f"{n.log}: {n.participant} night {n.night or '?'} ({n.scorer or 'no scoring'}): "
            f"{n.points} points, {sent}"
        )

    from sensord.privacy import validate_pseudonym

    try:
        cfg = load_config(config)
        if participant is not None:
            validate_pseudonym(participant, cfg.pseudonym_pattern)
        sink = None if queue_only else make_sink(cfg.sink)
        with service.open_store(cfg) as store:
            sender = service.make_sender(cfg, store, sink) if sink is not None else None
            try:
                report = run_backfill(
                    logs,
                    cfg,
                    store=store,
                    sender=sender,
                    participant=participant,
                    scoring=not no_scoring,
                    on_night=show,
                    check_participant=lambda who: validate_pseudonym(who, cfg.pseudonym_pattern),
                )
            finally:
                if sink is not None:
                    sink.close()
    except SensordError as exc:
        raise fail(exc) from None
    typer.echo(
        f"backfilled {len(report.nights)} night(s): {report.points} points, "
        f"{report.sent} sent, {report.quarantined} quarantined"
    )


# --- end store ----------------------------------------------------------------------------

# --- annotate area (issue 6): note, notes, web, report, export -------------------------
from sensord.cli_annotate import register as _register_annotate  # noqa: E402

_register_annotate(app)
# --- end annotate area ------------------------------------------------------------------



# --- daemon (issue 5): scan, pair, run, status ------------------------------------------

@app.command()
def scan(
    config: Path | None = _CONFIG_OPT,
    timeout: float = typer.Option(8.0, help="Seconds to listen."),
) -> None:
    """List nearby BLE devices with RSSI and the profile sensord recognises."""
    import asyncio

    from sensord.config import load_config
    from sensord.daemon_ops import scan as do_scan

    try:
        seen = asyncio.run(do_scan(load_config(config), timeout))
    except SensordError as exc:
        raise fail(exc) from None
    if not seen:
        typer.echo("no devices found (is the wearable awake and not connected elsewhere?)")
    for s in seen:
        a = s.advertisement
        rssi = f"{a.rssi_dbm} dBm" if a.rssi_dbm is not None else "? dBm"
        typer.echo(f"{a.address}  {rssi:>8}  {s.profile or '-':<18} {a.name or ''}")


@app.command()
def pair(
    address: str = typer.Argument(..., help="Device address, AA:BB:CC:DD:EE:FF."),
    role: str = typer.Option("chest", help="Where it is worn: chest, wrist, upper_arm, ..."),
    name: str | None = typer.Option(None, help="Device id in logs (default: the role)."),
    profile: str | None = typer.Option(None, help="Profile (default: recognised by a scan)."),
    config: Path = typer.Option(
        Path("/etc/sensord/sensord.toml"), "--config", "-c", help="Config file to add it to."
    ),
    timeout: float = typer.Option(8.0, help="Seconds to scan for the device."),
) -> None:
    """Add a wearable to the config (recognising its profile by scanning)."""
    import asyncio

    from sensord.config import load_config
    from sensord.daemon_ops import pair as do_pair
    from sensord.daemon_ops import scan as do_scan

    try:
        cfg = load_config(config if config.exists() else None)
        seen = asyncio.run(do_scan(cfg, timeout)) if profile is None else []
        block = do_pair(config, cfg, address, role=role, name=name, profile=profile, seen=seen)
        load_config(config)  # the file must still load
    except SensordError as exc:
        raise fail(exc) from None
    typer.echo(f"added to {config}:{block}")


@app.command()
def run(
    config: Path | None = _CONFIG_OPT,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    time_scale: float = typer.Option(
        1.0, "--time-scale", hidden=True, help="Run the daemon's clock this many times faster "
        "than real time (tests and demos with virtual wearables only)."
    ),
) -> None:
    """Record the configured wearables all night (foreground; for systemd)."""
    import asyncio

    from sensord.config import load_config
    from sensord.daemon_ops import run_daemon, scaled_clock, setup_logging

    setup_logging(verbose)
    try:
        asyncio.run(run_daemon(load_config(config), clock=scaled_clock(time_scale)))
    except SensordError as exc:
        raise fail(exc) from None


@app.command()
def status(
    config: Path | None = _CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Per device: connected, last notification, battery, coverage; outbox; clock sync."""
    import json

    from sensord.config import load_config
    from sensord.daemon_ops import format_status, read_status

    try:
        st = read_status(load_config(config))
    except SensordError as exc:
        raise fail(exc) from None
    typer.echo(json.dumps(st, indent=1) if as_json else format_status(st))
    if not st.get("running"):
        raise typer.Exit(1)


# --- end daemon ---------------------------------------------------------------------------

# --- session logs, replay, simulator, decoding, demo (issue 2 part B: branch logs) ------------

log_app = typer.Typer(help="Inspect session logs (.blelog).", no_args_is_help=True)
app.add_typer(log_app, name="log")


def _log_fail(exc: SensordError) -> NoReturn:
    typer.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
    raise typer.Exit(2)


def _problem_lines(problems: Any) -> None:
    for p in problems:
        typer.echo(f"warning: {p}", err=True)


@app.command()
def simulate(
    out: Path = typer.Option(Path("sim"), "--out", "-o", help="Directory for logs + truth."),
    profile: str = typer.Option("polar_h10", help="polar_h10 | hrs_strap | infinitime"),
    seed: int = typer.Option(1, help="Seed: same seed, same bytes."),
    nights: int = typer.Option(1, min=1, help="Consecutive nights."),
    start: str = typer.Option("2026-11-20T23:00", help="Local bedtime of night 1 (ISO)."),
    tz: str = typer.Option("Europe/Zurich", help="IANA time zone of --start."),
    duration_h: float = typer.Option(8.0, help="Hours in bed per night."),
    acc_rate_hz: float = typer.Option(50.0, help="Polar PMD accelerometer rate (25/50/100/200)."),
    dropouts_per_h: float = typer.Option(0.0, help="Mean radio dropouts per hour."),
    disconnects: float = typer.Option(0.0, help="Mean disconnects per night."),
    clock_step_s: float = typer.Option(
        0.0, help="Host clock is off by minus this until NTP steps it right 30 min in."),
    hr_offset_bpm: float = typer.Option(0.0, help="Added to the heart-rate baseline."),
    rr_file: Path | None = typer.Option(None, help="MMASH RR.csv.gz: use these real beats."),
    rem_scale: float = typer.Option(1.0, help="Multiply REM period lengths."),
    deep_scale: float = typer.Option(1.0, help="Multiply N3 period lengths."),
    waso_extra_min: float = typer.Option(0.0, help="Extra wake after sleep onset (min)."),
    participant: str = typer.Option("SIM01", help="Participant id in the log header."),
    one_file: bool = typer.Option(False, help="All nights in one log (one session each)."),
) -> None:
    """Simulate nights into session logs plus ground-truth hypnograms (CSV) and a summary."""
    from sensord import simulate as sim

    try:
        cfg = sim.SimConfig(
            seed=seed, start_local=start, tz=tz, nights=nights, duration_h=duration_h,
            profile=profile, acc_rate_hz=acc_rate_hz,
            effects=sim.NightEffects(rem_scale=rem_scale, deep_scale=deep_scale,
                                     waso_extra_min=waso_extra_min, hr_offset_bpm=hr_offset_bpm),
            dropouts_per_h=dropouts_per_h, disconnects_per_night=disconnects,
            clock_step_s=clock_step_s,
            rr_file=str(rr_file) if rr_file else None, participant=participant,
        )
        result, logs = sim.simulate_to_files(cfg, out, one_file=one_file)
    except SensordError as exc:
        _log_fail(exc)
    for night in result.nights:
        m = night.summary()
        typer.echo(f"night {night.index}: TST {m.get('tst_min', 0):.0f} min, "
                   f"N3 {m['N3_min']:.0f}, REM {m['R_min']:.0f}, WASO {m.get('waso_min', 0):.0f}")
    for log in logs:
        typer.echo(str(log))


def _replay_report(paths: list[Path], speed: float | None) -> tuple[Any, Any]:
    """Replay ``paths`` through the pipeline; ``(LoadReport, NightResult)``: what was
    decoded, and the night scored from the replayed streams (staging's ``score_night``
    in the participant's zone from the first log header; UTC if it names none)."""
    import asyncio

    from sensord.ble.replay import replay as run_replay
    from sensord.blelog import iter_headers
    from sensord.pipeline import Pipeline
    from sensord.staging import score_night

    pipe = Pipeline()
    asyncio.run(run_replay(paths, pipe, speed=speed))
    headers = [h for p in paths for h in iter_headers(p)]
    report = pipe.report([str(p) for p in paths], headers)
    tz = next((h.tz for h in headers if h.tz), "UTC")
    try:
        night = score_night(pipe.night(), tz=tz)
    except ConfigError as exc:  # a header naming an unknown zone: score in UTC, say so
        typer.echo(f"warning: {exc}; night scored in UTC", err=True)
        night = score_night(pipe.night(), tz="UTC")
    return report, night


def _replay_json(report: Any, night: Any) -> str:
    doc = report.as_dict()
    doc["night_summary"] = _jsonable(night.summary)
    doc["hypnogram"] = _hypnogram_chars(night)
    return json.dumps(doc, indent=1)


@app.command()
def replay(
    logs: list[Path] = typer.Argument(..., help="Session logs, played in order."),
    speed: float | None = typer.Option(None, help="Times real time (default: fastest)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replay session logs through the daemon's pipeline and score the night.

    Reports what was decoded, then the night summary and hypnogram scored from it."""
    try:
        report, night = _replay_report(logs, speed)
    except SensordError as exc:
        _log_fail(exc)
    if json_out:
        typer.echo(_replay_json(report, night))
        return
    typer.echo(report.format())
    typer.echo(night_summary_text(night))


@app.command()
def decode(
    char: str = typer.Option(..., "--char", help="Characteristic UUID (16- or 128-bit)."),
    payloads: list[str] = typer.Argument(..., help="Payloads in hex (spaces/colons allowed)."),
) -> None:
    """Decode GATT payloads of one characteristic and print JSON, one line each."""
    from sensord import devices

    try:
        for text in payloads:
            clean = text.replace(":", "").replace(" ", "")
            try:
                payload = bytes.fromhex(clean)
            except ValueError:
                raise LogFormatError(f"not hex: {text!r}") from None
            typer.echo(json.dumps(devices.decode_one(char, payload), sort_keys=True))
    except SensordError as exc:
        _log_fail(exc)


@log_app.command("info")
def log_info(log: Path = typer.Argument(..., help="A .blelog file.")) -> None:
    """Headers, sessions, record counts, channels, time span and problems of a log."""
    from sensord import blelog

    probs = blelog.Problems()
    try:
        c = blelog.load(log, probs)
    except SensordError as exc:
        _log_fail(exc)
    typer.echo(f"{log}: {log.stat().st_size} bytes, {c.members} sessions, {c.lines} records")
    for i, h in enumerate(c.headers):
        typer.echo(f"session {i}: format v{h.format_version}, sensord {h.sensord_version}, "
                   f"participant {h.participant}, tz {h.tz}, host {h.host}, "
                   f"started {_utc(h.wall_ns)}" + (f", {h.extra}" if h.extra else ""))
    for (dev, char), ch in sorted(c.channels.items()):
        typer.echo(f"channel {dev} {char}: {len(ch)} notifications, "
                   f"{_utc(int(ch.wall_ns.min()))} .. {_utc(int(ch.wall_ns.max()))}")
    typer.echo(f"device events: {len(c.device_events)}, clock events: {len(c.clock_events)}")
    typer.echo(f"problems: {probs.total()}")
    for p in probs:
        typer.echo(f"  {p}")


@log_app.command("cat")
def log_cat(
    log: Path = typer.Argument(..., help="A .blelog file."),
    decoded: bool = typer.Option(False, "--decode", help="Add each payload decoded (JSON)."),
    limit: int = typer.Option(0, help="Stop after this many events (0: all)."),
) -> None:
    """Print every event of a log, one per line: line, UTC time, device, what."""
    from sensord import blelog, devices
    from sensord.model import ClockEvent, DeviceEvent

    probs = blelog.Problems()
    try:
        for n, (line, ev) in enumerate(blelog.iter_records(log, probs)):
            if limit and n >= limit:
                break
            if isinstance(ev, DeviceEvent):
                what = f"{ev.device} {ev.kind} {ev.detail}".rstrip()
            elif isinstance(ev, ClockEvent):
                what = f"clock step {ev.step_ns} ns synced={ev.synced}"
            else:
                what = f"{ev.device} {ev.char_uuid} {ev.payload.hex()}"
                if decoded:
                    try:
                        what += " " + json.dumps(devices.decode_one(ev.char_uuid, ev.payload),
                                                 sort_keys=True)
                    except SensordError as exc:
                        what += f" !{exc}"
            typer.echo(f"{line}\t{_utc(ev.wall_ns)}\t{what}")
    except SensordError as exc:
        _log_fail(exc)
    _problem_lines(probs)


def _utc(t_ns: int) -> str:
    import numpy as np

    return str(np.datetime64(int(t_ns), "ns").astype("datetime64[ms]")) + "Z"


def demo_log() -> Path:
    """The bundled night the demo replays."""
    return Path(__file__).parent / "data" / "demo.blelog"


@app.command()
def demo(
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replay the bundled recorded night through the daemon's pipeline and score it.

    Prints what it found, then the night summary and hypnogram."""
    path = demo_log()
    try:
        report, night = _replay_report([path], None)
    except SensordError as exc:
        _log_fail(exc)
    if json_out:
        typer.echo(_replay_json(report, night))
        return
    typer.echo(f"sensord demo: replaying {path.name} (bundled night) through the pipeline")
    typer.echo(report.format())
    typer.echo(night_summary_text(night))


# --- end of session logs block -----------------------------------------------------------------


# --- sleep staging: score, validate (issue 3: branch staging) ----------------------------------

validate_app = typer.Typer(help="Validate the staging core on public datasets.",
                           no_args_is_help=True)
app.add_typer(validate_app, name="validate")


def _stage_fail(exc: SensordError) -> NoReturn:
    raise fail(exc)


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else round(float(obj), 4)
    return obj


@app.command()
def score(
    logs: list[Path] = typer.Argument(..., help="Session logs (.blelog) of one night."),
    tz: str | None = typer.Option(
        None, help="Participant's IANA time zone (night label); default: the log header's."
    ),
    model_file: Path | None = typer.Option(None, "--model", help="Stager model JSON."),
    truth: Path | None = typer.Option(
        None, help="Simulator ground-truth CSV: also report agreement with it."
    ),
    json_out: bool = typer.Option(False, "--json", help="Summary and epochs as JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="One CSV row per epoch."),
) -> None:
    """Score a night from session logs: per-epoch stages and the night summary."""
    import numpy as np

    from sensord.pipeline import load_streams
    from sensord.staging import load_model, score_night
    from sensord.staging.hypnogram import STAGE_NAMES

    try:
        streams, report = load_streams([str(p) for p in logs])
        mdl = load_model(model_file) if model_file is not None else None
        if tz is None:  # as replay and demo: the zone the first log header names
            tz = next((h.tz for h in report.headers if h.tz), "UTC")
            try:
                res = score_night(streams, tz=tz, model=mdl)
            except ConfigError as exc:  # a header naming an unknown zone
                typer.echo(f"warning: {exc}; night scored in UTC", err=True)
                res = score_night(streams, tz="UTC", model=mdl)
        else:
            res = score_night(streams, tz=tz, model=mdl)
        agreement = None
        if truth is not None:
            agreement = _truth_agreement(truth, res)
    except SensordError as exc:
        _stage_fail(exc)
    hyp = res.hypnogram
    if csv_out:
        typer.echo("t_ns,utc,stage,p_wake,p_light,p_deep,p_rem,hr_bpm,counts,feature_set")
        names = hyp.stage_names()
        for i in range(len(hyp)):  # output formatting only, after the vectorised scoring
            p = hyp.probabilities[i]
            cells = ["" if not np.isfinite(x) else f"{x:.4f}" for x in p]
            hr = res.features["hr_bpm"][i]
            cnt = res.features["counts"][i]
            typer.echo(
                f"{hyp.t_ns[i]},{_utc(int(hyp.t_ns[i]))},{names[i]},{','.join(cells)},"
                f"{'' if not np.isfinite(hr) else f'{hr:.1f}'},"
                f"{'' if not np.isfinite(cnt) else f'{cnt:.0f}'},"
                f"{int(res.features['feature_set'][i])}"
            )
        return
    if json_out:
        out = {
            "summary": res.summary,
            "agreement": agreement,
            "epochs": {
                "t_ns": hyp.t_ns,
                "stage": hyp.stage_names(),
                "probabilities": {n: hyp.probabilities[:, k] for k, n in enumerate(STAGE_NAMES)},
                "hr_bpm": res.features["hr_bpm"],
                "counts": res.features["counts"],
                "rmssd_ms": res.features["rmssd_ms"],
            },
        }
        typer.echo(json.dumps(_jsonable(out)))
        return
    typer.echo(night_summary_text(res))
    if agreement is not None:
        typer.echo(f"agreement with {truth}: " + json.dumps(_jsonable(agreement)))


def _truth_agreement(truth: Path, res: Any) -> dict[str, Any]:
    import numpy as np

    from sensord.simulate import read_truth
    from sensord.staging.validate import stage_report

    t_ns, codes = read_truth(truth)
    four = np.array([0, 1, 1, 2, 3])[codes.astype(np.int64)]
    hyp = res.hypnogram
    idx = (t_ns - hyp.start_ns) // (30 * 10**9)
    ok = (idx >= 0) & (idx < len(hyp)) & ((t_ns - hyp.start_ns) % (30 * 10**9) == 0)
    pred = hyp.stages[idx[ok]].astype(np.int64)
    return stage_report(four[ok], pred)


def _hypnogram_chars(res: Any) -> str:
    """One character per epoch: W wake, L light, D deep, R REM, . unscored."""
    return "".join(".WLDR"[c + 1] for c in res.hypnogram.stages.tolist())


def night_summary_text(res: Any) -> str:
    """Night summary and a one-character-per-epoch hypnogram (W L D R, . unscored)."""
    s = res.summary
    chars = _hypnogram_chars(res)
    lines = [
        f"night {s['night']} ({s['tz']}): {s['start_local']} .. {s['end_local']}, "
        f"scorer {s['scorer']}",
        f"  TIB {s['tib_min']:.1f} min, TST {s['tst_min']:.1f} min, SE {s['se_pct']} %, "
        f"SOL {s['sol_min']} min, WASO {s['waso_min']} min, awakenings {s['awakenings']}",
        f"  wake {s['wake_min']} / light {s['light_min']} / deep {s['deep_min']} / "
        f"REM {s['rem_min']} min; REM latency {s['rem_latency_min']} min; "
        f"SFI {s['sfi_per_h']} /h",
        f"  HR min {s.get('hr_min_bpm')} mean {s.get('hr_mean_bpm')} bpm, "
        f"RMSSD {s.get('rmssd_ms')} ms, coverage {s['coverage']}",
        "  hypnogram (30 s/char, W wake L light D deep R REM . unscored):",
    ]
    lines += ["  " + chars[i : i + 120] for i in range(0, len(chars), 120)]
    return "\n".join(lines)


@validate_app.command("walch")
def validate_walch(
    data: Path = typer.Option(..., "--data", help="The walch2019 folder (or its features/)."),
    model_file: Path | None = typer.Option(None, "--model", help="Stager model JSON."),
    loso: bool = typer.Option(False, "--loso", help="Leave-one-subject-out train + test."),
    feature_set: list[str] = typer.Option(
        ["hr+motion", "hr", "motion"], "--features", help="Feature sets to evaluate."
    ),
    jobs: int = typer.Option(1, min=1, help="Worker processes for --loso folds."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Agreement with polysomnography on the Walch et al. (2019) subjects."""
    from sensord.datasets import load_walch
    from sensord.staging import load_model
    from sensord.staging.validate import evaluate_walch, loso_walch_sets

    try:
        nights = load_walch(data)
        mdl = None if loso else load_model(model_file)
        out: dict[str, Any] = {
            "dataset": "walch2019",
            "subjects": [n.subject for n in nights],
            "mode": "loso" if loso else "model",
            "model": None if mdl is None else mdl.version,
            "feature_sets": {},
        }
        if mdl is not None:
            for fs in feature_set:
                out["feature_sets"][fs] = evaluate_walch(nights, mdl, fs)
        else:
            out["feature_sets"] = loso_walch_sets(nights, tuple(feature_set), jobs=jobs)
    except (SensordError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_validation(out, json_out)


@validate_app.command("mmash")
def validate_mmash(
    data: Path = typer.Option(..., "--data", help="The mmash folder (user_N/ subfolders)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Sadeh and Cole-Kripke vs the ActiGraph software's sleep summaries (MMASH)."""
    from sensord.datasets import load_mmash
    from sensord.staging.validate import compare_mmash

    try:
        out = compare_mmash(load_mmash(data))
    except SensordError as exc:
        _stage_fail(exc)
    out["dataset"] = "mmash"
    _print_validation(out, json_out)


def _print_validation(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(_jsonable(out)))
        return
    typer.echo(json.dumps(_jsonable(out), indent=1))


# --- end of sleep staging block ----------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()
