"""Every query of every dashboard, expanded as Grafana expands it, against a real InfluxDB.

The database holds a small study written through the store's line-protocol encoder
(``tests/dashboard_data.py``). For each dashboard the check resolves the variables with their own
queries, runs every panel, repeated panel and annotation query, and compares the answers with
what each panel expects (every column present, non-empty, of the right type; series grouped by
the expected tags; something left after the panel's transformations). Some answers are also
compared with numbers computed in Python from what was written. The same answers are drawn to
``<dashboard>.png`` under ``docs_images / "dashboards"`` (``docs/dashboards/`` with
``UPDATE_DOCS_IMAGES=1``; ``tests/conftest.py``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashboards import check, generate, render
from sensord.store import lineproto
from sensord.store import schema as sch
from tests import dashboard_data as dd
from tests.influx import InfluxDB, unique_db_name

ROOT = Path(__file__).resolve().parents[1]
MS = 1_000_000
H_NS = 3600 * 1_000_000_000


@pytest.fixture
def study_db(dashboard_study: tuple[InfluxDB, dd.Study]) -> tuple[InfluxDB, dd.Study]:
    """The session's study (``tests/conftest.py``), typed."""
    return dashboard_study


def committed(stem: str) -> dict[str, Any]:
    return json.loads((ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8"))


COMMITTED_TARGETS = generate.build_all()[1]
"""What each query of the committed dashboards must return (built before any monkeypatch)."""


def run_check(
    db: InfluxDB,
    study: dd.Study,
    stem: str,
    doc: dict[str, Any] | None = None,
    targets: list[generate.Target] | None = None,
) -> check.DashboardResult:
    targets = COMMITTED_TARGETS if targets is None else targets
    if stem == "night":
        start, end = study.nights[("p01", dd.NIGHTS[-1])]
        from_ms, to_ms = (start - 3 * H_NS) // MS, (end + H_NS) // MS
        prefer = {"participant": "p01", "night": dd.NIGHTS[-1]}
    else:
        a, b = study.span_ns
        from_ms, to_ms = a // MS, b // MS
        prefer = {"participant": "p01"}
    return check.check_dashboard(
        doc or committed(stem),
        [t for t in targets if t.dashboard == stem],
        lambda q: db.query(q, epoch="ms").raw,
        from_ms=from_ms,
        to_ms=to_ms,
        prefer=prefer,
    )


@pytest.mark.parametrize("stem", ["night", "person", "operations"])
def test_every_query_returns_what_its_panel_expects(
    study_db: tuple[InfluxDB, dd.Study], stem: str, docs_images: Path
) -> None:
    db, study = study_db
    result = run_check(db, study, stem)
    assert result.problems == []
    doc = committed(stem)
    n_vars = sum(v["type"] == "query" for v in doc.get("templating", {}).get("list", []))
    n_annos = len(doc.get("annotations", {}).get("list", []))
    repeats = {"substance": 2}  # kratom and caffeine appear in the study's range
    n_targets = sum(
        len(p.get("targets", [])) * repeats.get(p.get("repeat", ""), 1) for p in doc["panels"]
    )
    assert result.queries_run == n_vars + n_annos + n_targets
    for pr in result.panels:
        assert any(len(f) for f in pr.frames), pr.title
    preview = docs_images / "dashboards" / f"{stem}.png"
    render.render_dashboard(doc, result, preview)
    png = preview.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def _panel(result: check.DashboardResult, title: str) -> check.PanelResult:
    return next(p for p in result.panels if p.title == title)


def _rows(pr: check.PanelResult) -> list[dict[str, Any]]:
    (frame,) = [f for f in pr.frames if len(f)]
    return [{f.name: f.values[i] for f in frame.fields} for i in range(len(frame))]


def test_operations_numbers_match_the_study(study_db: tuple[InfluxDB, dd.Study]) -> None:
    db, study = study_db
    rows = {
        r["Participant"]: r
        for r in _rows(_panel(run_check(db, study, "operations"), "Participants"))
    }
    for p in dd.PARTICIPANTS:
        missing = sum((p, n) in dd.MISSING for n in dd.NIGHTS)
        assert rows[p]["Nights received"] == len(dd.NIGHTS) - missing
        assert rows[p]["Nights missing"] == missing
        assert rows[p]["Last night received"] == dd.NIGHTS[-1]


def test_with_versus_without_matches_a_python_split(study_db: tuple[InfluxDB, dd.Study]) -> None:
    db, study = study_db
    result = run_check(db, study, "person")
    rows = {r["Nights"]: r for r in _rows(_panel(result, "Nights with vs without kratom"))}
    with_k = [n for n in dd.NIGHTS if n in dd.SUBSTANCE_NIGHTS["kratom"]]
    without = [n for n in dd.NIGHTS if n not in dd.SUBSTANCE_NIGHTS["kratom"]]
    for taken, labels in ((1, with_k), (0, without)):
        tst = [float(study.summaries[("p01", n)]["tst_min"]) for n in labels]  # type: ignore[arg-type]
        assert rows[taken]["Count"] == len(labels)
        assert rows[taken]["TST"] == pytest.approx(np.mean(tst))


def test_deleted_annotations_stay_hidden(study_db: tuple[InfluxDB, dd.Study]) -> None:
    """p01 entered alcohol by mistake on the last evening and deleted it."""
    db, study = study_db
    stored = db.query('SELECT "deleted" FROM "annotation" WHERE "substance" = \'alcohol\'')
    assert [r["deleted"] for r in stored.rows()] == [True]  # it is in InfluxDB, marked
    night = run_check(db, study, "night")
    texts = [t for f in night.annotations["Substances"] for t in f.field("text").values]
    assert texts and not any("alcohol" in t for t in texts)
    person = run_check(db, study, "person")
    assert sorted(person.variables["substance"]) == ["caffeine", "kratom"]


def test_night_panels_show_the_written_night(study_db: tuple[InfluxDB, dd.Study]) -> None:
    db, study = study_db
    result = run_check(db, study, "night")
    summary = study.summaries[("p01", dd.NIGHTS[-1])]
    (stat,) = _panel(result, "Night summary").frames
    assert stat.field("TST").values == [summary["tst_min"]]
    assert stat.field("Awakenings").values == [summary["awakenings"]]
    (hyp,) = _panel(result, "Hypnogram").frames
    start, end = study.nights[("p01", dd.NIGHTS[-1])]
    shown = [v for v in hyp.field("Value").values if v is not None]
    by_code = {code: name for name, code in sch.STAGE_CODES.items()}
    assert shown == [by_code[int(c)] for c in study.stages[("p01", dd.NIGHTS[-1])]]
    assert len(shown) == (end - start) // dd.EPOCH_NS


def test_renaming_a_field_makes_the_check_fail(
    study_db: tuple[InfluxDB, dd.Study], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that follows a renamed schema field leaves the dashboard's panel empty, and the
    check says which panel and query; regenerating refuses until the dashboards are updated."""
    db, study = study_db
    assert run_check(db, study, "night").problems == []  # clean before the rename
    renamed = tuple(
        dataclasses.replace(f, name="rr_interval_ms") if f.name == "rr_ms" else f
        for f in sch.BEAT.fields
    )
    beat = dataclasses.replace(sch.BEAT, fields=renamed)
    monkeypatch.setattr(sch, "BEAT", beat)
    monkeypatch.setitem(sch.BY_NAME, beat.name, beat)
    # the writer, updated to the new schema, stores the beats under the new field name
    start, end = study.nights[("p01", dd.NIGHTS[-1])]
    t = np.arange(start, end, 1_000_000_000, dtype=np.int64)
    body = lineproto.schema_columns(
        beat.name,
        {sch.PARTICIPANT.name: "p01", sch.DEVICE_ROLE.name: dd.ROLE},
        t,
        {"rr_interval_ms": np.full(t.size, 1000.0)},
    )
    copy = InfluxDB(db.server, unique_db_name("rename"))
    db.server.create_database(copy.name)
    try:
        # same study, except that RR intervals only exist under the new name
        db.query(f'SELECT * INTO "{copy.name}"."autogen".:MEASUREMENT FROM /.*/ GROUP BY *')
        copy.query(f'DROP MEASUREMENT "{beat.name}"')
        assert copy.write(body).status == 204
        problems = run_check(copy, study, "night").problems
        assert problems == ["sensord-night / RR intervals and HRV / A: no data"]
        with pytest.raises(KeyError, match="rr_ms"):
            generate.build_all()
    finally:
        db.server.drop_database(copy.name)


def test_renaming_a_measurement_makes_the_check_fail(
    study_db: tuple[InfluxDB, dd.Study], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dashboards regenerated from a schema whose measurement name no longer matches what is
    stored find nothing, and the check names the panel."""
    db, study = study_db
    monkeypatch.setattr(sch, "HEART_RATE", dataclasses.replace(sch.HEART_RATE, name="hr_samples"))
    docs, targets = generate.build_all()
    problems = run_check(db, study, "night", docs["night"], targets).problems
    assert problems == ["sensord-night / Heart rate / A: no data"]
