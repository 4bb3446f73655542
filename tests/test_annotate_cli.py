"""`sensord note / notes / export / report person` on the real local store (and influxd)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from sensord import annotate as an
from sensord.cli import app
from sensord.config import load_config
from sensord.notebook import parse_record
from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.annotate_helpers import PARTICIPANT, afternoon_tz, open_book, write_config
from tests.influx import InfluxDB

runner = CliRunner()
TRICKY = 'said "stop"\nline two, a=b \\ back 😴🌙'


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path, tz=afternoon_tz())


def run(cfg: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    argv = list(args)
    cut = argv.index("--") if "--" in argv else len(argv)  # options before a "--"
    argv[cut:cut] = ["--config", str(cfg)]
    res = runner.invoke(app, argv, input=input)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def history(cfg: Path) -> list[an.Annotation]:
    book = open_book(cfg.parent / "data" / "sensord.sqlite")
    try:
        return book.history()
    finally:
        book.close()


DIARY_OPTS = [
    "--in-bed", "22:50", "--tried-sleep", "23:10", "--sol-min", "25", "--awakenings", "2",
    "--waso-min", "40", "--final-wake", "06:20", "--out-of-bed", "06:45", "--quality", "2",
    "--rested", "3",
]  # fmt: skip


def test_note_commands_store_what_was_said(cfg: Path) -> None:
    code, out, _ = run(cfg, "note", "pain", "6", "--context", "bedtime", "--at", "22:40",
                       "--site", "left foot", "-d", "burning", "-d", "tingling")  # fmt: skip
    assert code == 0 and "pain 6/10 (bedtime) at left foot: burning, tingling" in out
    code, out, _ = run(cfg, "note", "substance", "kratom", "--dose", "3", "--unit", "g",
                       "--form", "powder", "--at", "21:30")  # fmt: skip
    assert code == 0 and "kratom 3 g powder" in out
    code, out, _ = run(cfg, "note", "event", "woke from pain", "--at", "03:10")
    assert code == 0 and "event: woke from pain" in out
    code, out, _ = run(cfg, "note", "diary", *DIARY_OPTS, "--comments", TRICKY)
    assert code == 0 and "quality 2/5" in out and "TST 365 min" in out
    h = history(cfg)
    assert [a.kind for a in h] == ["pain", "substance", "event", "diary"]
    assert h[0].payload == an.Pain(6, "bedtime", "left foot", ("burning", "tingling"))
    assert h[3].payload.comments == TRICKY  # type: ignore[union-attr]
    code, out, _ = run(cfg, "notes", "list", "--night", h[3].night)
    assert code == 0
    assert sum(1 for line in out.splitlines() if line.strip()) >= 3
    assert "woke from pain" in out


def test_diary_prompts_for_missing_items(cfg: Path) -> None:
    answers = "23:00\n23:20\n15\n1\n10\n06:30\n06:50\n4\n4\nfine\n"
    code, out, _ = run(cfg, "note", "diary", input=answers)
    assert code == 0, out
    d = history(cfg)[0].payload
    assert isinstance(d, an.Diary)
    assert (d.sol_min, d.awakenings_n, d.waso_min, d.quality_1_5, d.comments) == (
        15,
        1,
        10,
        4,
        "fine",
    )


def diary_with(**changes: str) -> list[str]:
    """The good diary options with some values replaced (``in_bed="late"``)."""
    out = list(DIARY_OPTS)
    for key, value in changes.items():
        out[out.index("--" + key.replace("_", "-")) + 1] = value
    return out


BAD = [
    (["note", "pain", "11"], "rating"),
    (["note", "pain", "--", "-1"], "rating"),
    (["note", "pain", "5", "--context", "lunch"], "context"),
    (["note", "pain", "5", "-d", "itchy"], "descriptors"),
    (["note", "pain", "5", "--at", "2099-01-01 10:00"], "at"),
    (["note", "pain", "5", "--at", "noonish"], "at"),
    (["note", "substance", " "], "name"),
    (["note", "substance", "kratom", "--dose=-3", "--unit", "g"], "dose"),
    (["note", "substance", "kratom", "--dose", "300", "--unit", "g"], "dose"),
    (["note", "substance", "kratom", "--dose", "3"], "unit"),
    (["note", "substance", "kratom", "--dose", "3", "--unit", "bucket"], "unit"),
    (["note", "substance", "kratom", "--form", "gas"], "form"),
    (["note", "substance", "kratom", "--route", "ear"], "route"),
    (["note", "event", ""], "text"),
    (["note", "diary", "--no-prompt", *DIARY_OPTS[:-2]], "rested"),
    (["note", "diary", *DIARY_OPTS[:2], "--tried-sleep", "22:00", *DIARY_OPTS[4:]], "tried_sleep"),
    (["note", "diary", "--night", "2099-01-01", *DIARY_OPTS], "night"),
    (["note", "diary", *DIARY_OPTS[:-4], "--quality", "9", "--rested", "3"], "quality"),
    (["note", "diary", *DIARY_OPTS[:4], "--sol-min", "900", *DIARY_OPTS[6:]], "sol_min"),
    (["notes", "delete", "zz"], "id"),
    (["notes", "edit", "abcdef", "--set", "rating=3"], "id"),
    # every other option of every command, one bad value each
    (["note", "pain", "5", "--site", "x" * 81], "body_site"),
    (["note", "pain", "5", "--site", "left\x07foot"], "body_site"),
    (["note", "substance", "kratom", "--at", "25:00"], "at"),
    (["note", "substance", "kratom", "--at", "2099-01-01 21:30"], "at"),
    (["note", "substance", "kratom", "--note", "bad\x00byte"], "note"),
    (["note", "substance", "kratom", "--note", "n" * 2001], "note"),
    (["note", "event", "woke", "--at", "soonish"], "at"),
    (["note", "event", "woke", "--at", "2099-01-01 03:00"], "at"),
    (["note", "diary", *diary_with(in_bed="late")], "in_bed"),
    (["note", "diary", *diary_with(awakenings="two")], "awakenings"),
    (["note", "diary", *diary_with(awakenings="-1")], "awakenings"),
    (["note", "diary", *diary_with(awakenings="0")], "awakenings"),  # 40 min awake, 0 times
    (["note", "diary", *diary_with(waso_min="lots")], "waso_min"),
    (["note", "diary", *diary_with(waso_min="500")], "waso_min"),  # longer than the night
    (["note", "diary", *diary_with(final_wake="6")], "final_wake"),
    (["note", "diary", *diary_with(final_wake="23:00")], "final_wake"),  # before trying
    (["note", "diary", *diary_with(out_of_bed="noon")], "out_of_bed"),
    (["note", "diary", *diary_with(out_of_bed="06:00")], "out_of_bed"),  # before final wake
    (["note", "diary", *DIARY_OPTS, "--comments", "\x1b[31mred"], "comments"),
    (["note", "diary", *DIARY_OPTS, "--comments", "c" * 2001], "comments"),
    (["note", "diary", *diary_with(rested="0")], "rested"),
    (["note", "diary", *diary_with(rested="6")], "rested"),
    (["note", "diary", *diary_with(rested="3.5")], "rested"),
    (["notes", "edit", "{pain}", "--set", "rating=11"], "rating"),
    (["notes", "edit", "{pain}", "--set", "context=lunch"], "context"),
    (["notes", "list", "--night", "bad"], "night"),
    (["notes", "list", "--night", "2026-02-30"], "night"),
    (["export", "--from", "bad", "--out", "{out}"], "from"),
    (["export", "--to", "2026-13-01", "--out", "{out}"], "to"),
    (["export", "--from", "2026-11-30", "--to", "2026-11-01", "--out", "{out}"], "to"),
    (["report", "person", "--from", "bad", "--out", "{out}"], "from"),
    (["report", "person", "--from", "2026-11-30", "--to", "2026-11-01", "--out", "{out}"], "to"),
]


@pytest.mark.parametrize(("argv", "field"), BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_bad_input_names_the_field_and_stores_nothing(
    cfg: Path, argv: list[str], field: str
) -> None:
    run(cfg, "note", "event", "a good entry that must survive")
    run(cfg, "note", "pain", "5", "--context", "bedtime")
    before = history(cfg)
    out_dir = cfg.parent / "out"
    argv = [a.replace("{pain}", before[-1].id).replace("{out}", str(out_dir)) for a in argv]
    code, out, err = run(cfg, *argv)
    assert code == 2
    assert err.startswith(f"error: {field}: "), err
    assert "Traceback" not in err + out
    assert history(cfg) == before  # nothing stored, nothing lost
    assert not out_dir.exists()  # no export or report half-written


def test_edit_and_delete_keep_the_history(cfg: Path) -> None:
    run(cfg, "note", "pain", "5", "--context", "bedtime", "--at", "22:40")
    first = history(cfg)[0]
    code, out, _ = run(cfg, "notes", "edit", first.id[:6], "--set", "rating=7",
                       "--set", "descriptors=burning,numbness")  # fmt: skip
    assert code == 0 and f"[edit of {first.id}]" in out
    edited = history(cfg)[-1]
    assert edited.payload == an.Pain(7, "bedtime", "", ("burning", "numbness"))
    code, _, err = run(cfg, "notes", "edit", first.id, "--set", "rating=2")
    assert code == 2 and "replaced by" in err
    code, _, err = run(cfg, "notes", "edit", edited.id, "--set", "colour=blue")
    assert code == 2 and err.startswith("error: colour: ")
    code, out, _ = run(cfg, "notes", "delete", edited.id)
    assert code == 0 and f"[deletes {edited.id}]" in out
    code, out, _ = run(cfg, "notes", "list")
    assert out.strip() == "no annotations"
    code, out, _ = run(cfg, "notes", "list", "--history")
    assert len(out.strip().splitlines()) == 3
    code, _, err = run(cfg, "notes", "delete", edited.id)
    assert code == 2 and "was deleted" in err


def test_every_kind_round_trips_cli_store_influxdb_report(
    cfg: Path, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """CLI -> local store -> outbox -> real influxd -> report/export, texts unchanged."""
    assert run(cfg, "note", "pain", "4", "--context", "night_waking", "--site", TRICKY)[0] == 0
    assert run(cfg, "note", "substance", "Blue lotus", "--dose", "2", "--unit", "cups",
               "--form", "tea", "--note", TRICKY)[0] == 0  # fmt: skip
    assert run(cfg, "note", "event", TRICKY)[0] == 0
    assert run(cfg, "note", "diary", *DIARY_OPTS, "--comments", TRICKY)[0] == 0
    local = an.current(history(cfg))
    assert len(local) == 4

    book = open_book(cfg.parent / "data" / "sensord.sqlite")
    try:
        report = Sender(
            book.store, Influx1Sink(influxdb.url, influxdb.name, gzip_body=False)
        ).flush()
    finally:
        book.close()
    assert report.finished and report.quarantined == 0
    rows = influxdb.rows("annotation")
    from_influx = sorted((parse_record(r["record"]) for r in rows), key=lambda a: a.id)
    assert from_influx == sorted(local, key=lambda a: a.id)
    assert (
        sorted(r["note"] for r in rows if r["kind"] in ("substance", "event", "diary"))
        == [TRICKY] * 3
    )

    # Reports read the local store: a scored night for each night the notes belong to.
    nights = sorted({a.night for a in local})
    assert len(nights) == 2  # pain, substance, event: tonight; the diary: last night
    store = LocalStore(cfg.parent / "data" / "sensord.sqlite")
    try:
        for night in nights:
            start = int(dt.datetime.fromisoformat(f"{night}T22:00Z").timestamp()) * 10**9
            store.put_night(
                {"participant": PARTICIPANT, "scorer": "s@1", "night": night,
                 "start_ns": start, "end_ns": start + 60 * 10**9, "final": True},
                epochs={"t_ns": [start, start + 30 * 10**9], "stage": ["wake", "light"]},
            )  # fmt: skip
    finally:
        store.close()
    by_kind = {a.kind: a for a in local}
    tz = load_config(cfg, env={}).timezone

    def check_rows(page: str, kinds: list[str]) -> None:
        """The report's annotation table: one row per annotation, each field as entered."""
        rows = table_rows(page)
        assert sorted(rows) == sorted(by_kind[k].id for k in kinds)
        for kind in kinds:
            a = by_kind[kind]
            when, shown_kind, content, note, _ = rows[a.id]
            assert when == an_local(a.t_ns, tz) and shown_kind == kind
            assert note == TRICKY  # body site, substance note, event text, diary comments
            if kind == "pain":
                assert content == f"Pain 4/10, night waking, {TRICKY}"
            elif kind == "substance":
                assert content == "Blue lotus 2 cups tea"
            elif kind == "event":
                assert content == TRICKY
            else:
                assert content == (
                    f"Diary for the night of {a.night}: quality 2/5, rested 3/5, slept 365 min\n"
                    "into bed 22:50, tried to sleep 23:10, asleep after 25 min, 2 awakenings "
                    "(40 min awake), final awakening 06:20, out of bed 06:45"
                )

    out = tmp_path / "rep"
    code, _, err = run(cfg, "report", "person", "--out", str(out))
    assert code == 0, err
    check_rows((out / "person.html").read_text(encoding="utf-8"),
               ["pain", "substance", "event", "diary"])
    for night in nights:
        code, _, err = run(cfg, "report", "night", night, "--out", str(out))
        assert code == 0, err
        check_rows((out / f"night-{night}.html").read_text(encoding="utf-8"),
                   [a.kind for a in local if a.night == night])

    code, _, err = run(cfg, "export", "--format", "jsonl", "--out", str(tmp_path / "x"))
    assert code == 0, err
    exported = [
        json.loads(x) for x in (tmp_path / "x" / "annotations.jsonl").read_text().splitlines()
    ]
    back = sorted(
        (an.from_fields({k: v for k, v in r.items() if k != "in_force"}) for r in exported),
        key=lambda a: a.id,
    )
    assert back == sorted(local, key=lambda a: a.id)
    code, _, err = run(cfg, "export", "--format", "csv", "--out", str(tmp_path / "c"))
    assert code == 0, err

    with (tmp_path / "c" / "annotations.csv").open(newline="", encoding="utf-8") as f:
        cells = [r for r in csv.DictReader(f)]
    assert sorted(r["text"] for r in cells if r["kind"] == "event") == [TRICKY]
    assert run(cfg, "export", "--format", "xml")[0] == 2


class _Table(HTMLParser):
    """Cells of every ``<tr>`` of a page, as text (character references resolved)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(page: str) -> dict[str, list[str]]:
    """Rows of a report's annotation table (local time, kind, annotation, note, id) by id."""
    parser = _Table()
    parser.feed(page)
    return {r[4]: r for r in parser.rows if len(r) == 5}


def an_local(t_ns: int, tz: str) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def test_web_serve_refuses_without_pin_then_serves(cfg: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    code, _, err = run(cfg, "web", "serve", "--port", "0")
    assert code == 2 and "before a PIN exists" in err
    code, _, err = run(cfg, "web", "set-pin", "--stdin", input="12345\n")
    assert code == 2 and err.startswith("error: the PIN must be 6-64 characters")
    code, _, err = run(cfg, "web", "set-pin", "--stdin", input="482915\n")
    assert code == 0, err
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensord", "web", "serve", "--port", "0", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        url = line.split()[-1]
        with urllib.request.urlopen(url + "login", timeout=10) as resp:
            assert resp.status == 200 and "PIN" in resp.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
