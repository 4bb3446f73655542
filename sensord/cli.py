"""Command-line interface (typer). Thin: parse options, call the library, print.

Every command catches :class:`sensord.errors.SensordError` at this edge and exits
with status 2 and a one-line message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sensord import __version__
from sensord.errors import SensordError

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


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


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
        raise _fail(exc) from None
    typer.echo(
        f"pushed {report.sent_lines} lines in {report.requests} requests "
        f"({report.seconds:.1f} s); quarantined {report.quarantined}; "
        f"{report.pending_lines} left in the outbox"
    )
    if not report.finished:
        typer.echo(f"error: gave up after {report.retries} retries: {report.last_error}", err=True)
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
        raise _fail(exc) from None


@app.command()
def doctor(config: Path | None = _CONFIG_OPT) -> None:
    """Check InfluxDB: reachability, version, credentials, database/bucket."""
    from sensord.config import load_config
    from sensord.store import service

    try:
        report = service.doctor(load_config(config))
    except SensordError as exc:
        raise _fail(exc) from None
    for line in report.lines:
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


# --- end store ----------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()
