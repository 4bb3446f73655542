"""Command-line interface (typer). Thin: parse options, call the library, print.

Every command catches :class:`sensord.errors.SensordError` at this edge and exits
with status 2 and a one-line message instead of a traceback.
"""

from __future__ import annotations

import typer

from sensord import __version__

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


# --- annotate area (issue 6): note, notes, web, report, export -------------------------
from sensord.cli_annotate import register as _register_annotate  # noqa: E402

_register_annotate(app)
# --- end annotate area ------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()
