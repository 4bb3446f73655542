"""`sensord export --deidentify` on a simulated month (issue 8).

The month is made by the real path: ``sensord simulate`` (30 nights, Europe/Berlin, across
the 2026 spring DST change) -> ``sensord backfill --queue-only`` (decode, score, nights and
epochs in the local store) and, for every night, annotations through the notebook
(``sensord.annotate`` records: pain with a body site, kratom with a note, a substance
typed as free text, an event in the participant's words, the sleep diary with comments).
The checks compute local weekdays and times with ``zoneinfo`` here, independently of
``sensord.privacy``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from sensord import annotate as an
from sensord.cli import app
from tests.annotate_helpers import open_book

TZ = "Europe/Berlin"
WHO = "P07"
FIRST = dt.date(2026, 3, 10)
NIGHTS = 30
FREE_TEXT = {
    "site": "left foot after the fall at Anna's",
    "note": "bought from Marco, the usual shop",
    "typed": "grandma Hilde's valerian brew",
    "event": "woke up, argument with Jonas about rent",
    "comments": "slept at my sister's flat in Bern",
}
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def annotate_night(book: Any, label: str) -> None:
    day = dt.date.fromisoformat(label)
    morning = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(9, 0), ZoneInfo(TZ))
    now_ns = int(morning.timestamp()) * 10**9
    evening = f"{label} 22:40"
    book.append([
        an.pain(6, "bedtime", at=evening, body_site=FREE_TEXT["site"], now_ns=now_ns, tz=TZ),
        an.substance("kratom", dose="3", unit="g", form="powder", at=f"{label} 21:30",
                     note=FREE_TEXT["note"], now_ns=now_ns, tz=TZ),
        an.substance(FREE_TEXT["typed"], at=f"{label} 21:45", now_ns=now_ns, tz=TZ),
        an.event(FREE_TEXT["event"], at=f"{day + dt.timedelta(days=1)} 03:10",
                 now_ns=now_ns, tz=TZ),
        an.diary(night=label, in_bed="22:50", tried_sleep="23:00", sol_min="20",
                 awakenings="1", waso_min="15", final_wake="06:40", out_of_bed="07:00",
                 quality="3", rested="3", comments=FREE_TEXT["comments"],
                 now_ns=now_ns, tz=TZ),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("month")
    cfg = root / "sensord.toml"
    cfg.write_text(
        f'participant_id = "{WHO}"\ntimezone = "{TZ}"\ndata_dir = "{root / "data"}"\n'
        '[[devices]]\nname = "hrs_strap"\naddress = "A0:00"\nprofile = "hrs_strap"\n'
    )
    code, out = invoke(
        "simulate", "--out", str(root / "sim"), "--nights", str(NIGHTS), "--profile",
        "hrs_strap", "--duration-h", "1", "--participant", WHO, "--tz", TZ,
        "--start", f"{FIRST}T23:00",
    )  # fmt: skip
    assert code == 0, out
    logs = sorted(str(p) for p in (root / "sim").glob("*.blelog"))
    assert len(logs) == NIGHTS
    code, out = invoke("backfill", "-c", str(cfg), "--queue-only", *logs)
    assert code == 0 and f"backfilled {NIGHTS} night(s)" in out, out
    book = open_book(root / "data" / "sensord.sqlite", participant=WHO)
    try:
        for k in range(NIGHTS):
            annotate_night(book, (FIRST + dt.timedelta(days=k)).isoformat())
    finally:
        book.close()
    secret = root / "study.secret"
    secret.write_text("a per-study secret, long enough: 7f1c9a\n")
    os.chmod(secret, 0o600)
    other = root / "other.secret"
    other.write_text("another study's secret 0123456789\n")
    os.chmod(other, 0o600)
    paths = {"cfg": cfg, "secret": secret, "other": other}
    for name, extra in (
        ("plain", []),
        ("deid1", ["--deidentify", "--secret-file", str(secret)]),
        ("deid2", ["--deidentify", "--secret-file", str(secret)]),
        ("kept", ["--deidentify", "--secret-file", str(secret), "--keep-text"]),
        ("other", ["--deidentify", "--secret-file", str(other)]),
    ):
        out_dir = root / name
        code, out = invoke("export", "-c", str(cfg), "--format", "jsonl", "--out", str(out_dir),
                           *extra)  # fmt: skip
        assert code == 0, out
        paths[name] = out_dir
    code, out = invoke(
        "export", "-c", str(cfg), "--format", "csv", "--out", str(root / "deidcsv"),
        "--deidentify", "--secret-file", str(secret),
    )  # fmt: skip
    assert code == 0, out
    paths["deidcsv"] = root / "deidcsv"
    return paths


def rows(directory: Path, table: str) -> list[dict[str, Any]]:
    text = (directory / f"{table}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def all_text(directory: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(directory.iterdir()))


def local(t_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns // 10**9, tz=ZoneInfo(TZ))


def test_no_pseudonym_date_or_free_text_remains(month: dict[str, Path]) -> None:
    plain = rows(month["plain"], "annotations")
    assert len(plain) == 5 * NIGHTS and len(rows(month["plain"], "nights")) == NIGHTS
    for directory in (month["deid1"], month["deidcsv"]):
        text = all_text(directory)
        assert WHO not in text
        # every calendar day from a week before the month to a week after it
        day = FIRST - dt.timedelta(days=7)
        while day <= FIRST + dt.timedelta(days=NIGHTS + 7):
            assert day.isoformat() not in text, day
            day += dt.timedelta(days=1)
        for phrase in FREE_TEXT.values():
            for word in re.findall(r"[A-Z][a-z]+|valerian|sister|rent", phrase):
                assert word not in text, word
    # no original instant survives either, as a number
    original_ns = {
        v for t in ("annotations", "nights", "epochs") for r in rows(month["plain"], t)
        for k, v in r.items() if k.endswith("_ns") and isinstance(v, int)
    }  # fmt: skip
    shifted_ns = {
        v for t in ("annotations", "nights", "epochs") for r in rows(month["deid1"], t)
        for k, v in r.items() if k.endswith("_ns") and isinstance(v, int)
    }  # fmt: skip
    assert len(original_ns) > 3000 and len(shifted_ns) == len(original_ns)
    assert not original_ns & shifted_ns
    # the ids of the records are re-keyed too; edits keep pointing at what they replace
    assert not {r["id"] for r in plain} & {r["id"] for r in rows(month["deid1"], "annotations")}


def test_weekday_and_local_time_of_day_kept(month: dict[str, Path]) -> None:
    checked = 0
    for table in ("annotations", "nights", "epochs"):
        before, after = rows(month["plain"], table), rows(month["deid1"], table)
        assert len(before) == len(after)
        for a, b in zip(before, after, strict=True):
            for key, value in a.items():
                if key.endswith("_ns") and isinstance(value, int):
                    x, y = local(value), local(b[key])
                    assert (x.weekday(), x.time()) == (y.weekday(), y.time()), (table, key)
                    assert (x - y).days >= 7 * 52 - 1  # moved back at least a year
                    checked += 1
                elif key.endswith("_local"):
                    x, y = dt.datetime.fromisoformat(value), dt.datetime.fromisoformat(b[key])
                    assert (x.weekday(), x.time()) == (y.weekday(), y.time()), (table, key)
                    assert y.utcoffset() == local(int(y.timestamp()) * 10**9).utcoffset()
                elif key == "night":
                    x, y = dt.date.fromisoformat(value), dt.date.fromisoformat(b[key])
                    assert x.weekday() == y.weekday() and (x - y).days % 7 == 0
            # everything that is not identifying is unchanged
            for key in ("kind", "rating_nrs", "dose", "unit", "stage", "tst_min", "hr_bpm"):
                if key in a:
                    assert b[key] == a[key], (table, key)
    assert checked > 3000
    # one participant, one offset: the nights keep their order and spacing in days
    labels = [dt.date.fromisoformat(r["night"]) for r in rows(month["deid1"], "nights")]
    assert [(d - labels[0]).days for d in labels] == list(range(NIGHTS))


def test_same_secret_same_export_other_secret_other_mapping(month: dict[str, Path]) -> None:
    first, second = month["deid1"], month["deid2"]
    names = sorted(p.name for p in first.iterdir())
    assert names == ["annotations.jsonl", "epochs.jsonl", "manifest.json", "nights.jsonl"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    mine = {r["participant"] for r in rows(first, "nights")}
    theirs = {r["participant"] for r in rows(month["other"], "nights")}
    assert len(mine) == len(theirs) == 1 and mine != theirs
    assert [r["night"] for r in rows(first, "nights")] != [
        r["night"] for r in rows(month["other"], "nights")
    ]


def test_manifest_says_what_was_removed_and_keep_text_keeps_it(month: dict[str, Path]) -> None:
    manifest = json.loads((month["deid1"] / "manifest.json").read_text())
    dropped = manifest["tables"]["annotations"]["dropped_fields"]
    # what annotate_night entered, night by night
    assert dropped["body_site"] == NIGHTS
    assert dropped["note"] == NIGHTS
    assert dropped["text"] == NIGHTS
    assert dropped["comments"] == NIGHTS
    assert dropped["free-text substance name"] == NIGHTS
    assert dropped["name_entered"] == 2 * NIGHTS  # as typed, for kratom and the free text
    assert manifest["tables"]["nights"]["records"] == NIGHTS
    assert "secret" not in json.dumps(manifest).lower().replace("study secret", "")
    kept = all_text(month["kept"])
    assert all(phrase in kept for phrase in FREE_TEXT.values())
    assert WHO not in kept and FIRST.isoformat() not in kept


def test_secret_file_must_be_private_and_is_required(
    month: dict[str, Path], tmp_path: Path
) -> None:
    loose = tmp_path / "loose.secret"
    loose.write_text("a per-study secret, long enough: 7f1c9a\n")
    os.chmod(loose, 0o644)
    code, out = invoke("export", "-c", str(month["cfg"]), "--out", str(tmp_path / "x"),
                       "--deidentify", "--secret-file", str(loose))  # fmt: skip
    assert code == 2 and str(loose) in out and f"chmod 600 {loose}" in out
    assert "7f1c9a" not in out and not (tmp_path / "x").exists()
    code, out = invoke("export", "-c", str(month["cfg"]), "--out", str(tmp_path / "y"),
                       "--deidentify")  # fmt: skip
    assert code == 2 and "--secret-file" in out and not (tmp_path / "y").exists()
