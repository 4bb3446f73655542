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
    """Check the Pi and InfluxDB: adapter, BlueZ, permissions, clock, disk, sink."""
    from sensord.config import load_config
    from sensord.daemon_ops import doctor_checks
    from sensord.store import service

    try:
        cfg = load_config(config)
        radio_ok, radio_lines = doctor_checks(cfg)  # area daemon: adapter, BlueZ, clock, disk
        report = service.doctor(cfg)
    except SensordError as exc:
        raise _fail(exc) from None
    for line in [*radio_lines, *report.lines]:
        typer.echo(line)
    if not (report.ok and radio_ok):
        raise typer.Exit(1)


# --- end store ----------------------------------------------------------------------------


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
        raise _fail(exc) from None
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
        raise _fail(exc) from None
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
        raise _fail(exc) from None


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
        raise _fail(exc) from None
    typer.echo(json.dumps(st, indent=1) if as_json else format_status(st))
    if not st.get("running"):
        raise typer.Exit(1)


# --- end daemon ---------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()
