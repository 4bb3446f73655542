"""`sensord export --from/--to`: which nights, epochs and annotations an export holds.

The range is one of night labels, both ends inclusive. Nights and their epochs are chosen
by their label; an annotation by the night it belongs to (pain, events, the diary: the
noon-to-noon window; a substance: the day from 06:00), not by its clock date. So a morning
pain rating on the day after ``--to`` is in (it describes the night ``--to``), and an
evening one on the day of ``--from`` at 11:59 is not.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from sensord import annotate as an
from sensord.store.local import LocalStore
from tests.annotate_helpers import PARTICIPANT, afternoon_tz, write_config
from tests.test_annotate_cli import DIARY_OPTS, history, run

NS = 1_000_000_000


def label(days_ago: int) -> str:
    return (dt.date.today() - dt.timedelta(days=days_ago)).isoformat()


# Five nights N0..N4 (two weeks ago, one a day); the export asks for N1..N3.
N = [label(14 - i) for i in range(5)]


def day_after(night: str) -> str:
    return (dt.date.fromisoformat(night) + dt.timedelta(days=1)).isoformat()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = write_config(tmp_path, tz=afternoon_tz())
    store = LocalStore(tmp_path / "data" / "sensord.sqlite")
    try:
        for i, night in enumerate(N):
            start = int(dt.datetime.fromisoformat(f"{night}T22:00Z").timestamp()) * NS
            store.put_night(
                {"participant": PARTICIPANT, "scorer": "s@1", "night": night,
                 "start_ns": start, "end_ns": start + 90 * NS, "final": True,
                 "tst_min": 400.0 + i},
                epochs={"t_ns": [start + k * 30 * NS for k in range(3)],
                        "stage": ["wake", "light", "deep"]},
            )  # fmt: skip
    finally:
        store.close()
    return path


# (command, the night it belongs to, in N1..N3?)
ENTRIES: list[tuple[list[str], str, bool]] = [
    (["note", "pain", "1", "--at", f"{N[1]} 11:59"], N[0], False),  # before noon: N0's morning
    (["note", "pain", "2", "--at", f"{N[1]} 12:00"], N[1], True),  # noon starts night N1
    (["note", "event", "bathroom", "--at", f"{day_after(N[1])} 03:00"], N[1], True),
    (["note", "event", "woke from pain", "--at", f"{N[2]} 23:30"], N[2], True),
    (["note", "pain", "3", "--at", f"{day_after(N[3])} 11:59"], N[3], True),  # N3's morning
    (["note", "pain", "4", "--at", f"{day_after(N[3])} 12:00"], N[4], False),
    (["note", "substance", "caffeine", "--at", f"{N[1]} 05:59"], N[0], False),  # day from 06:00
    (["note", "substance", "caffeine", "--at", f"{N[1]} 06:00"], N[1], True),
    (["note", "substance", "kratom", "--at", f"{day_after(N[3])} 05:59"], N[3], True),
    (["note", "diary", "--night", N[0], *DIARY_OPTS], N[0], False),
    (["note", "diary", "--night", N[3], *DIARY_OPTS], N[3], True),
]


def read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def export(cfg: Path, out: Path, fmt: str, *args: str) -> dict[str, list[dict[str, Any]]]:
    code, _, err = run(cfg, "export", "--format", fmt, "--out", str(out), *args)
    assert code == 0, err
    return {t: read(out / f"{t}.{fmt}", fmt) for t in ("annotations", "nights", "epochs")}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_range_holds_the_nights_from_to_inclusive(
    cfg: Path, tmp_path: Path, fmt: str
) -> None:
    for argv, _, _ in ENTRIES:
        code, _, err = run(cfg, *argv)
        assert code == 0, (argv, err)
    records = history(cfg)
    assert [a.night for a in records] == [night for _, night, _ in ENTRIES]  # as documented
    inside = {a.id for a, (_, _, keep) in zip(records, ENTRIES, strict=True) if keep}
    # an edit of a record inside the range stays in it (its history goes along)
    code, _, err = run(cfg, "notes", "edit", records[1].id, "--set", "rating=5")
    assert code == 0, err
    edit = history(cfg)[-1]
    assert edit.night == N[1]
    inside.add(edit.id)

    got = export(cfg, tmp_path / "x", fmt, "--from", N[1], "--to", N[3])
    assert {r["id"] for r in got["annotations"]} == inside
    assert sorted({r["night"] for r in got["annotations"]}) == N[1:4]
    assert [r["night"] for r in got["nights"]] == N[1:4]
    assert [str(r["tst_min"]) for r in got["nights"]] == ["401.0", "402.0", "403.0"]
    assert [r["night"] for r in got["epochs"]] == [n for n in N[1:4] for _ in range(3)]

    # one end open: everything from the first night, or up to the last
    assert [r["night"] for r in export(cfg, tmp_path / "f", fmt, "--from", N[3])["nights"]] \
        == N[3:]
    upto = export(cfg, tmp_path / "t", fmt, "--to", N[1])
    assert [r["night"] for r in upto["nights"]] == N[:2]
    assert {r["night"] for r in upto["annotations"]} == {N[0], N[1]}
    # one night: --from and --to the same label
    one = export(cfg, tmp_path / "one", fmt, "--from", N[3], "--to", N[3])
    assert [r["night"] for r in one["nights"]] == [N[3]]
    assert sorted(r["kind"] for r in one["annotations"]) == ["diary", "pain", "substance"]
    # outside every stored night: empty tables (header only for CSV), not an error
    none = export(cfg, tmp_path / "none", fmt, "--from", label(3), "--to", label(2))
    assert none == {"annotations": [], "nights": [], "epochs": []}
    assert an.current(history(cfg))  # exporting changes nothing
