"""The committed dashboards are exactly what the generator writes, from schema names only."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate
from sensord.store import schema as sch

ROOT = Path(__file__).resolve().parents[1]


def test_committed_json_is_what_the_generator_writes() -> None:
    docs, _ = generate.build_all()
    assert sorted(docs) == ["night", "operations", "person"]
    for stem, doc in docs.items():
        committed = (ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8")
        assert committed == generate.render_json(doc), (
            f"dashboards/{stem}.json is stale: run python -m dashboards.generate"
        )
    assert generate.main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "person.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def _queries(doc: dict[str, Any]) -> list[str]:
    out = [v["query"] for v in doc.get("templating", {}).get("list", []) if v["type"] == "query"]
    out += [a["target"]["query"] for a in doc.get("annotations", {}).get("list", [])]
    out += [t["query"] for p in doc["panels"] for t in p.get("targets", [])]
    return out


IDENT = re.compile(r'"((?:[^"\\]|\\.)*)"')


@pytest.mark.parametrize("stem", ["night", "person", "operations"])
def test_every_name_in_every_query_is_in_the_schema(stem: str) -> None:
    """Parse the committed JSON independently of the generator: each quoted identifier is an
    output alias (after AS), or a measurement / tag / field of the schema."""
    doc = json.loads((ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8"))
    names = {m.name for m in sch.MEASUREMENTS}
    keys = {k for m in sch.MEASUREMENTS for k in (*m.tag_names, *m.field_names)}
    queries = _queries(doc)
    assert queries
    for q in queries:
        aliases = set(re.findall(r'AS "((?:[^"\\]|\\.)*)"', q))
        measurements = re.findall(r'FROM "((?:[^"\\]|\\.)*)"', q)
        assert measurements and set(measurements) <= names, q
        for ident in IDENT.findall(q):
            assert ident in names or ident in keys or ident in aliases, (ident, q)


def test_a_field_missing_from_the_schema_stops_the_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renamed = tuple(
        dataclasses.replace(f, name="interval_ms") if f.name == "rr_ms" else f
        for f in sch.BEAT.fields
    )
    monkeypatch.setattr(sch, "BEAT", dataclasses.replace(sch.BEAT, fields=renamed))
    with pytest.raises(KeyError, match="rr_ms"):
        generate.build_all()


def test_a_renamed_measurement_changes_the_generated_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sch, "HEART_RATE", dataclasses.replace(sch.HEART_RATE, name="hr_samples"))
    docs, _ = generate.build_all()
    text = generate.render_json(docs["night"])
    assert 'FROM \\"hr_samples\\"' in text
    assert text != (ROOT / "dashboards/night.json").read_text(encoding="utf-8")


def test_hypnogram_has_a_fixed_colour_for_every_stage() -> None:
    doc = json.loads((ROOT / "dashboards/night.json").read_text(encoding="utf-8"))
    hyp = next(p for p in doc["panels"] if p["title"] == "Hypnogram")
    (mapping,) = hyp["fieldConfig"]["defaults"]["mappings"]
    assert set(mapping["options"]) == set(sch.STAGES)
    texts = {v["text"] for v in mapping["options"].values()}
    assert texts == {"Wake", "Light", "Deep", "REM", "Unscored"}
    colours = [v["color"] for v in mapping["options"].values()]
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colours)
    assert len(set(colours)) == len(colours)
    # the probabilities panel reuses the same colours
    probs = next(p for p in doc["panels"] if p["title"] == "Stage probabilities")
    by_name = {
        o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
        for o in probs["fieldConfig"]["overrides"]
    }
    for stage, result in mapping["options"].items():
        if stage != "unscored":
            assert by_name[result["text"]] == result["color"]


def test_night_dashboard_draws_pain_and_substances_on_every_time_panel() -> None:
    doc = json.loads((ROOT / "dashboards/night.json").read_text(encoding="utf-8"))
    annos = doc["annotations"]["list"]
    assert {a["name"] for a in annos} == {"Pain", "Substances"}
    for a in annos:
        assert a["enable"] is True
        assert "filter" not in a  # no panel filter: Grafana draws them on every time panel
        assert a["target"]["textColumn"] == "text" and a["target"]["tagsColumn"] == "tags"
    assert [v["name"] for v in doc["templating"]["list"]] == ["participant", "scorer", "night"]


def test_queries_are_influxql_only() -> None:
    for stem in ("night", "person", "operations"):
        doc = json.loads((ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8"))
        for q in _queries(doc):
            assert re.match(r"^(SELECT|SHOW) ", q), q
            assert "|>" not in q and "from(bucket" not in q  # no Flux
        for p in doc["panels"]:
            for t in p.get("targets", []):
                assert t["rawQuery"] is True
                assert t["datasource"] == {"type": "influxdb", "uid": generate.DATASOURCE_UID}
