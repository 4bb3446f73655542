"""Helpers shared by the annotation tests (TEMPORARY json-lines book until the store lands)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sensord import annotate as an


@dataclass
class _JsonBook:
    path: Path

    def history(self) -> list[an.Annotation]:
        if not self.path.exists():
            return []
        return [an.from_fields(json.loads(x)) for x in self.path.read_text().splitlines()]

    def append(self, records: Sequence[an.Annotation]) -> None:
        with self.path.open("a") as f:
            for r in records:
                f.write(json.dumps(an.to_fields(r), ensure_ascii=False) + "\n")


def open_book(path: Path, *, tz: str) -> _JsonBook:
    return _JsonBook(path)
