"""Helpers shared by the annotation tests."""

from __future__ import annotations

from pathlib import Path

from sensord.notebook import NoteBook
from sensord.store.local import LocalStore

PARTICIPANT = "P07"


def open_book(path: Path, *, participant: str = PARTICIPANT) -> NoteBook:
    """The real notebook over the real SQLite local store at ``path``."""
    return NoteBook(LocalStore(path), participant, owns_store=True)
