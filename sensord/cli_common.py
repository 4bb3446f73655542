"""What every CLI area shares: turning a :class:`SensordError` into a masked one-line exit."""

from __future__ import annotations

import typer


def masked(text: str) -> str:
    """``text`` with every secret read so far replaced (issue 8)."""
    from sensord.credentials import redact, registered_secrets

    return redact(text, registered_secrets())


def fail(exc: Exception) -> typer.Exit:
    """Print ``error: <message>`` (secrets masked) to stderr; return the status-2 exit to raise."""
    typer.echo(f"error: {masked(str(exc))}", err=True)
    return typer.Exit(2)
