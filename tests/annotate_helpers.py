"""Helpers shared by the annotation tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sensord.notebook import NoteBook
from sensord.store.local import LocalStore

PARTICIPANT = "P07"


def open_book(path: Path, *, participant: str = PARTICIPANT) -> NoteBook:
    """The real notebook over the real SQLite local store at ``path``."""
    return NoteBook(LocalStore(path), participant, owns_store=True)


def afternoon_tz() -> str:
    """An Etc/GMT zone where it is now mid-afternoon, so "last night" lies wholly in the
    past whatever time the tests run (Etc/GMT-N is UTC+N)."""
    hour = dt.datetime.now(dt.UTC).hour
    offset = (15 - hour + 12) % 24 - 12  # -12..11
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def write_config(root: Path, *, tz: str, participant: str = PARTICIPANT) -> Path:
    """A config file whose data directory is ``root``."""
    path = root / "sensord.toml"
    path.write_text(
        f'participant_id = "{participant}"\ntimezone = "{tz}"\ndata_dir = "{root / "data"}"\n',
        encoding="utf-8",
    )
    return path
