"""CLI of the annotate area: ``note``, ``notes``, ``web``, ``report``, ``export``.

Registered on the main typer app by :mod:`sensord.cli`. Thin: parse, call the library,
print. Any :class:`sensord.errors.SensordError` becomes a one-line message on stderr and
exit status 2; nothing is stored when input is rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer

from sensord import annotate as an
from sensord.cli_common import fail
from sensord.config import Config, load_config
from sensord.errors import AnnotationError, ConfigError, SensordError

T = TypeVar("T")

note_app = typer.Typer(help="Record a pain rating, a substance, the sleep diary or an event.")
notes_app = typer.Typer(help="List, edit or delete annotations (edits keep the history).")
web_app = typer.Typer(help="The participant's annotation web page.")
report_app = typer.Typer(help="Night and per-person (N-of-1) reports.")

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default $SENSORD_CONFIG).")
AtOpt = typer.Option(
    None, "--at", help="Local time, e.g. 22:40 or '2026-11-24 22:40' (default now)."
)


@contextlib.contextmanager
def _edge() -> Iterator[None]:
    try:
        yield
    except SensordError as exc:
        raise fail(exc) from None


def _config(path: Path | None) -> Config:
    return load_config(path)


@contextlib.contextmanager
def _configured(path: Path | None) -> Iterator[Config]:
    """The loaded config, inside :func:`_edge` (a SensordError becomes exit status 2)."""
    with _edge():
        yield _config(path)


def _book(cfg: Config) -> Any:
    from sensord.notebook import open_book

    return open_book(cfg)


def _store(cfg: Config, make: Callable[[int, str], an.Annotation | list[an.Annotation]]) -> None:
    """Build records with the config's tz and the clock's now, append, print them."""
    made = make(time.time_ns(), cfg.timezone)
    records = made if isinstance(made, list) else [made]
    book = _book(cfg)
    try:
        book.append(records)
    finally:
        book.close()
    for r in records:
        typer.echo(an.describe(r))


def _note(path: Path | None, make: Callable[[int, str], an.Annotation]) -> None:
    """Load the config and :func:`_store` what ``make`` builds, inside the error edge."""
    with _configured(path) as cfg:
        _store(cfg, make)


# --------------------------------------------------------------------------- note
@note_app.command("pain")
def note_pain(
    rating: str = typer.Argument(..., help="0 (no pain) to 10 (worst pain imaginable)."),
    context: str = typer.Option(
        "other", "--context", help="bedtime, night_waking, morning or other."
    ),
    at: str | None = AtOpt,
    site: str | None = typer.Option(None, "--site", help="Body site, e.g. 'left foot'."),
    descriptor: list[str] | None = typer.Option(
        None,
        "--descriptor",
        "-d",
        help="burning, tingling, electric_shooting, numbness, touch_pain (repeatable).",
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Record a pain rating (0-10 numeric rating scale)."""
    _note(
        config,
        lambda now, tz: an.pain(
            rating,
            context,
            at=at,
            body_site=site,
            descriptors=descriptor or (),
            now_ns=now,
            tz=tz,
        ),
    )


@note_app.command("substance")
def note_substance(
    name: str = typer.Argument(
        ..., help="Substance (kratom, alcohol, caffeine, ... or free text)."
    ),
    dose: str | None = typer.Option(None, "--dose", help="Amount, e.g. 3 or 2.5."),
    unit: str | None = typer.Option(
        None, "--unit", help="mg, g, mcg, ml, drinks, cups, tablets, ..."
    ),
    form: str | None = typer.Option(
        None, "--form", help="leaf, powder, capsule, extract, tea, ..."
    ),
    route: str | None = typer.Option(None, "--route", help="oral, smoked, vaped, sublingual, ..."),
    at: str | None = AtOpt,
    note: str | None = typer.Option(None, "--note", help="Free text."),
    config: Path | None = ConfigOpt,
) -> None:
    """Record a substance taken (names outside the curated list are kept and flagged)."""
    _note(
        config,
        lambda now, tz: an.substance(
            name,
            dose=dose,
            unit=unit,
            form=form,
            route=route,
            at=at,
            note=note,
            now_ns=now,
            tz=tz,
        ),
    )


DIARY_PROMPTS = (
    ("in_bed", "What time did you get into bed? (HH:MM)"),
    ("tried_sleep", "What time did you try to go to sleep? (HH:MM)"),
    ("sol_min", "How long did it take you to fall asleep? (minutes)"),
    ("awakenings", "How many times did you wake up, not counting your final awakening?"),
    ("waso_min", "In total, how long did these awakenings last? (minutes)"),
    ("final_wake", "What time was your final awakening? (HH:MM)"),
    ("out_of_bed", "What time did you get out of bed for the day? (HH:MM)"),
    ("quality", "Quality of your sleep, 1 very poor - 5 very good"),
    ("rested", "How rested did you feel on waking, 1 not at all - 5 very well"),
    ("comments", "Comments (optional)"),
)


@note_app.command("diary")
def note_diary(
    night: str | None = typer.Option(
        None, "--night", help="Night (YYYY-MM-DD); default last night."
    ),
    in_bed: str | None = typer.Option(None, "--in-bed", help="Time into bed (HH:MM)."),
    tried_sleep: str | None = typer.Option(None, "--tried-sleep", help="Time tried to sleep."),
    sol_min: str | None = typer.Option(None, "--sol-min", help="Minutes to fall asleep."),
    awakenings: str | None = typer.Option(None, "--awakenings", help="Number of awakenings."),
    waso_min: str | None = typer.Option(None, "--waso-min", help="Minutes awake in total."),
    final_wake: str | None = typer.Option(None, "--final-wake", help="Final awakening (HH:MM)."),
    out_of_bed: str | None = typer.Option(None, "--out-of-bed", help="Time out of bed (HH:MM)."),
    quality: str | None = typer.Option(None, "--quality", help="Sleep quality 1-5."),
    rested: str | None = typer.Option(None, "--rested", help="Feeling rested 1-5."),
    comments: str | None = typer.Option(None, "--comments", help="Free text."),
    prompt: bool = typer.Option(
        True, "--prompt/--no-prompt", help="Ask for items not given as options."
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Record the morning sleep diary (Consensus Sleep Diary core items)."""
    values: dict[str, str | None] = {
        "in_bed": in_bed,
        "tried_sleep": tried_sleep,
        "sol_min": sol_min,
        "awakenings": awakenings,
        "waso_min": waso_min,
        "final_wake": final_wake,
        "out_of_bed": out_of_bed,
        "quality": quality,
        "rested": rested,
        "comments": comments,
    }
    with _configured(config) as cfg:
        if prompt and any(v is None for k, v in values.items() if k != "comments"):
            for key, question in DIARY_PROMPTS:
                if values[key] is None:
                    default = "" if key == "comments" else None
                    values[key] = typer.prompt(question, default=default, show_default=False)
        v = values
        _store(
            cfg,
            lambda now, tz: an.diary(
                night=night,
                in_bed=v["in_bed"],
                tried_sleep=v["tried_sleep"],
                sol_min=v["sol_min"],
                awakenings=v["awakenings"],
                waso_min=v["waso_min"],
                final_wake=v["final_wake"],
                out_of_bed=v["out_of_bed"],
                quality=v["quality"],
                rested=v["rested"],
                comments=v["comments"],
                now_ns=now,
                tz=tz,
            ),
        )


@note_app.command("event")
def note_event(
    text: str = typer.Argument(..., help='What happened, e.g. "woke from pain".'),
    at: str | None = AtOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Record an event in your own words."""
    _note(config, lambda now, tz: an.event(text, at=at, now_ns=now, tz=tz))


# --------------------------------------------------------------------------- notes
@notes_app.command("list")
def notes_list(
    night: str | None = typer.Option(None, "--night", help="Only this night (YYYY-MM-DD)."),
    history: bool = typer.Option(
        False, "--history", help="Show every record, edits and deletions."
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """List annotations in force (or the whole append-only history)."""
    with _configured(config) as cfg:
        if night is not None:
            night = an.parse_night(night).isoformat()
        book = _book(cfg)
        try:
            records = book.history()
        finally:
            book.close()
        shown = sorted(records, key=lambda a: a.recorded_ns) if history else an.current(records)
        shown = [a for a in shown if night is None or a.night == night]
        for a in shown:
            typer.echo(an.describe(a))
        if not shown:
            typer.echo("no annotations" + (f" for night {night}" if night else ""))


def _parse_sets(sets: list[str]) -> dict[str, object]:
    changes: dict[str, object] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AnnotationError(f"expected FIELD=VALUE, got {item!r}", field="set")
        key = key.strip().replace("-", "_")
        if key == "descriptors":
            changes[key] = [v for v in value.split(",") if v.strip()]
        else:
            changes[key] = value
    return changes


def _revise(config: Path | None, note_id: str, revise: Any) -> None:
    """Append the record ``revise(history, target, now_ns)`` makes for annotation ``note_id``."""
    with _configured(config) as cfg:
        book = _book(cfg)
        try:
            records = book.history()
            rec = revise(records, an.find(records, note_id), time.time_ns())
            book.append([rec])
        finally:
            book.close()
        typer.echo(an.describe(rec))


@notes_app.command("edit")
def notes_edit(
    note_id: str = typer.Argument(..., metavar="ID", help="Annotation id (or a unique prefix)."),
    set_: list[str] = typer.Option(
        ...,
        "--set",
        help="FIELD=VALUE to change, repeatable (e.g. --set rating=7 --set at=22:10).",
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Replace an annotation by an edited copy (the original stays in the history)."""
    changes = _parse_sets(set_)
    _revise(config, note_id, lambda records, target, now_ns: an.edit(
        records, target, changes, now_ns=now_ns))


@notes_app.command("delete")
def notes_delete(
    note_id: str = typer.Argument(..., metavar="ID", help="Annotation id (or a unique prefix)."),
    config: Path | None = ConfigOpt,
) -> None:
    """Withdraw an annotation (a deletion record is appended; nothing is erased)."""
    _revise(config, note_id, lambda records, target, now_ns: an.delete(
        records, target, now_ns=now_ns))


# --------------------------------------------------------------------------- web
@web_app.command("set-pin")
def web_set_pin(
    pin_stdin: bool = typer.Option(False, "--stdin", help="Read the PIN from standard input."),
    config: Path | None = ConfigOpt,
) -> None:
    """Set the participant's PIN for the web page (stored as a salted scrypt hash)."""
    from sensord.web.app import pin_path
    from sensord.web.auth import PinFile, check_pin_text

    with _configured(config) as cfg:
        if pin_stdin:
            pin = sys.stdin.readline().rstrip("\r\n")
        else:
            pin = getpass.getpass("New PIN (6-64 characters): ")
            check_pin_text(pin)
            if getpass.getpass("Repeat the PIN: ") != pin:
                raise ConfigError("the two PINs differ; nothing changed", key="pin")
        check_pin_text(pin)
        cfg.ensure_data_dir()
        PinFile(pin_path(cfg)).save(pin)
        typer.echo(f"PIN set ({pin_path(cfg)})")


@web_app.command("serve")
def web_serve(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default [web] bind)."),
    port: int | None = typer.Option(None, "--port", help="TCP port (default [web] port)."),
    config: Path | None = ConfigOpt,
) -> None:
    """Serve the annotation page until interrupted (refuses to start without a PIN)."""
    from sensord.web.app import start_from_config

    with _configured(config) as cfg:

        async def run() -> None:
            server = await start_from_config(cfg, host=host, port=port)
            typer.echo(f"serving on {server.url}", err=True)
            try:
                await asyncio.Event().wait()
            finally:
                await server.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())


# --------------------------------------------------------------------------- report/export
def _participant_nights(
    cfg: Config, store: Any, since: str | None, until: str | None, scorer: str | None
) -> list[dict[str, Any]]:
    """Night summaries of the participant, one per night (the given or most used scorer)."""
    rows = store.list_nights(cfg.participant_id, scorer=scorer, since=since, until=until)
    if scorer is None and rows:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["scorer"]] = counts.get(r["scorer"], 0) + 1
        best = max(counts, key=lambda s: (counts[s], s))
        rows = [r for r in rows if r["scorer"] == best]
    return list(rows)


def _night_range(from_: str | None, to: str | None) -> tuple[str | None, str | None]:
    """``--from``/``--to`` as night labels, both inclusive (``None``: open end)."""
    since = an.parse_night(from_, field="from").isoformat() if from_ else None
    until = an.parse_night(to, field="to").isoformat() if to else None
    if since is not None and until is not None and until < since:
        raise AnnotationError(f"night {until} is before --from {since}", field="to")
    return since, until


@report_app.command("night")
def report_night(
    night: str = typer.Argument(..., help="Night label YYYY-MM-DD (the evening's date)."),
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer (default: any)."),
    log: list[Path] | None = typer.Option(
        None, "--log", help="Session log(s) of the night: draw raw heart rate, RR and motion."
    ),
    out: Path = typer.Option(Path("reports"), "--out", help="Output directory."),
    config: Path | None = ConfigOpt,
) -> None:
    """Hypnogram, stage probabilities, heart rate, RR/RMSSD, motion, annotations, metrics."""
    from sensord.report import ReportError, night_data_from_store, night_report, with_streams

    with _configured(config) as cfg:
        label = an.parse_night(night).isoformat()
        book = _book(cfg)
        try:
            rows = _participant_nights(cfg, book.store, label, label, scorer)
            if not rows:
                known = [r["night"] for r in book.store.list_nights(cfg.participant_id)]
                raise ReportError(
                    f"no scored night {label} for {cfg.participant_id} in the local store"
                    + (f" (nights: {', '.join(known[-7:])})" if known else " (no nights yet)")
                )
            summary = rows[0]
            epochs = book.store.get_night_epochs(cfg.participant_id, label, summary["scorer"])
            notes = [a for a in an.current(book.history()) if a.night == label]
        finally:
            book.close()
        data = night_data_from_store(summary, epochs, cfg.timezone)
        if log:
            from sensord.pipeline import load_streams

            streams, _ = load_streams([str(p) for p in log])
            data = with_streams(data, streams)
        png, html_path = night_report(data, notes, out)
        typer.echo(f"wrote {png}\nwrote {html_path}")


@report_app.command("person")
def report_person(
    from_: str | None = typer.Option(None, "--from", help="First night (YYYY-MM-DD)."),
    to: str | None = typer.Option(None, "--to", help="Last night (YYYY-MM-DD)."),
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer (default: most used)."),
    out: Path = typer.Option(Path("reports"), "--out", help="Output directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    config: Path | None = ConfigOpt,
) -> None:
    """N-of-1 view: nights with each substance vs without, by dose, by bedtime pain."""
    from sensord import nof1
    from sensord.report import person_report, person_text

    with _configured(config) as cfg:
        since, until = _night_range(from_, to)
        book = _book(cfg)
        try:
            nights = _participant_nights(cfg, book.store, since, until, scorer)
            notes = [
                a
                for a in an.current(book.history())
                if (since is None or a.night >= since) and (until is None or a.night <= until)
            ]
        finally:
            book.close()
        analysis = nof1.analyse_person(nights, notes, seed=seed)
        span = f"{since or 'first night'} to {until or 'last night'}"
        path = person_report(
            analysis, notes, participant=cfg.participant_id, tz=cfg.timezone, out_dir=out, span=span
        )
        typer.echo(person_text(analysis))
        typer.echo(f"wrote {path}")


def export_cmd(
    from_: str | None = typer.Option(None, "--from", help="First night (YYYY-MM-DD)."),
    to: str | None = typer.Option(None, "--to", help="Last night (YYYY-MM-DD)."),
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    out: Path = typer.Option(Path("export"), "--out", help="Output directory."),
    deidentify: bool = typer.Option(
        False,
        "--deidentify",
        help="For sharing: re-key the pseudonym, shift dates by whole weeks (weekday and "
        "time of day kept), drop free text; writes manifest.json beside the files.",
    ),
    secret_file: Path | None = typer.Option(
        None,
        "--secret-file",
        help="The study's de-identification secret (mode 0600; same secret, same mapping).",
    ),
    keep_text: bool = typer.Option(
        False, "--keep-text", help="With --deidentify: keep free-text notes."
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Export epochs, nights and annotations (whole history) between two nights."""
    from sensord.export import FORMATS, annotation_rows, epoch_rows, write_rows

    with _edge():
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; expected csv or jsonl", key="format")
        deid = None
        if deidentify:
            from sensord.credentials import read_secret
            from sensord.privacy import Deidentifier

            if secret_file is None:
                raise ConfigError("--deidentify needs --secret-file", key="secret-file")
            secret = read_secret(file=secret_file, what="de-identification secret")
            deid = Deidentifier(secret.encode("utf-8"), keep_free_text=keep_text)
        elif secret_file is not None or keep_text:
            raise ConfigError("--secret-file and --keep-text go with --deidentify",
                              key="deidentify")
        cfg = _config(config)
        since, until = _night_range(from_, to)
        book = _book(cfg)
        try:
            nights = book.store.list_nights(cfg.participant_id, since=since, until=until)
            epochs = [
                row
                for n in nights
                for row in epoch_rows(
                    n, book.store.get_night_epochs(cfg.participant_id, n["night"], n["scorer"])
                )
            ]
            history = [
                a
                for a in book.history()
                if (since is None or a.night >= since) and (until is None or a.night <= until)
            ]
        finally:
            book.close()
        tables = {
            "annotations": annotation_rows(history),
            "nights": nights,
            "epochs": epochs,
        }
        if deid is not None:
            from sensord.export import deidentify_tables

            tables, manifest = deidentify_tables(
                tables, deid, participant=cfg.participant_id, tz=cfg.timezone
            )
            manifest_path = write_manifest(manifest, out)
        for name, rows in tables.items():
            path = out / f"{name}.{fmt}"
            n = write_rows(rows, path, fmt)
            typer.echo(f"wrote {path} ({n} rows)")
        if deid is not None:
            typer.echo(f"wrote {manifest_path} (what was removed or changed)")


def write_manifest(manifest: dict[str, Any], out: Path) -> Path:
    """``manifest.json`` in the export directory (sorted keys: same input, same bytes)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def register(app: typer.Typer) -> None:
    """Add the annotate area's commands to the main app."""
    app.add_typer(note_app, name="note")
    app.add_typer(notes_app, name="notes")
    app.add_typer(web_app, name="web")
    app.add_typer(report_app, name="report")
    app.command("export")(export_cmd)
