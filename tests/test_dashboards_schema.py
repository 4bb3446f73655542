"""Every dashboard validates against the JSON schemas generated from Grafana's own types, one
set per ``@grafana/schema`` version in ``dashboards/schema/<version>/``."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dashboards import validate

ROOT = Path(__file__).resolve().parents[1]
STEMS = ("night", "person", "operations")
SCRIPT = ROOT / "tools/gen_dashboard_schema.sh"
VERSIONS = validate.versions()


def load(stem: str) -> dict[str, Any]:
    return json.loads((ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8"))


# Settings the committed dashboards carry that Grafana added after a committed schema's version:
# @grafana/schema 10.4.19 has none of these keys (and allows no unknown keys), 11.5.3 and 11.6.0
# have all three (so they have no entry). Each is written at Grafana 11.6's default. "variable"
# is a templating variable, the others a panel type's options. docs/dashboards.md says what
# each means on Grafana 10.4.
ADDED_AFTER: dict[str, tuple[tuple[str, str], ...]] = {
    "10.4.19": (
        ("variable", "allowCustomValue"),  # 11.6 default true; 10.4 has no switch for it
        ("stat", "percentChangeColorMode"),  # 11.6: required in the stat Options type
        ("state-timeline", "perPage"),  # 11.6: rows per page, default 20; 10.4 has no paging
    ),
}


def _added_after(doc: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """``(json path of the object, key)`` of each ADDED_AFTER[version] setting ``doc`` has."""
    found = []
    for where, key in ADDED_AFTER.get(version, ()):
        if where == "variable":
            for i, var in enumerate(doc.get("templating", {}).get("list", [])):
                if key in var:
                    found.append((f"/templating/list/{i}", key))
        else:
            for i, panel in enumerate(doc["panels"]):
                if panel["type"] == where and key in panel.get("options", {}):
                    found.append((f"/panels/{i}/options/", key))
    return found


def _without(doc: dict[str, Any], settings: list[tuple[str, str]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for where, key in settings:
        obj: Any = doc
        for part in where.strip("/").split("/"):
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        del obj[key]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("stem", STEMS)
def test_committed_dashboard_validates(stem: str, version: str) -> None:
    """Against the newest schema: no error. Against an older one: exactly one error for each
    setting Grafana added later (ADDED_AFTER), and none once those are taken out."""
    doc = load(stem)
    newer = _added_after(doc, version)
    expected = [
        f"{w}: Additional properties are not allowed ({k!r} was unexpected)" for w, k in newer
    ]
    assert sorted(validate.errors(doc, version)) == sorted(expected)
    assert list(validate.errors(_without(doc, newer), version)) == []
    # the panel types used are all covered by a panel-options schema
    assert {p["type"] for p in doc["panels"]} <= set(validate.panel_types(version))


@pytest.mark.parametrize("version", sorted(ADDED_AFTER))
def test_added_after_is_what_the_schemas_differ_in(version: str) -> None:
    """Each ADDED_AFTER key is in the newest schema and not in the older one, and some committed
    dashboard carries it (so the list can neither hide a real difference nor go stale)."""
    assert version in VERSIONS and version != VERSIONS[-1]

    def properties(v: str, where: str) -> set[str]:
        if where == "variable":
            path, name = validate.schema_dir(v) / "dashboard.schema.json", "InfluxVariableModel"
        else:
            path, name = validate.schema_dir(v) / "panels" / f"{where}.schema.json", "Options"
        return set(json.loads(path.read_text(encoding="utf-8"))["definitions"][name]["properties"])

    carried = {key for stem in STEMS for _, key in _added_after(load(stem), version)}
    for where, key in ADDED_AFTER[version]:
        assert key in properties(VERSIONS[-1], where), (where, key)
        assert key not in properties(version, where), (where, key)
        assert key in carried, (where, key)


def _first(doc: dict[str, Any], ptype: str) -> dict[str, Any]:
    return next(p for p in doc["panels"] if p["type"] == ptype)


def _break_grid(doc: dict[str, Any]) -> None:
    del doc["panels"][0]["gridPos"]["w"]


def _break_schema_version(doc: dict[str, Any]) -> None:
    doc["schemaVersion"] = "41"


def _break_unknown_key(doc: dict[str, Any]) -> None:
    doc["panels"][0]["titel"] = "typo"


def _break_query_type(doc: dict[str, Any]) -> None:
    doc["panels"][1]["targets"][0]["query"] = 42


def _break_result_format(doc: dict[str, Any]) -> None:
    doc["panels"][1]["targets"][0]["resultFormat"] = "flux"


def _break_annotation(doc: dict[str, Any]) -> None:
    del doc["annotations"]["list"][0]["iconColor"]


def _break_legend(doc: dict[str, Any]) -> None:
    _first(doc, "timeseries")["options"]["legend"]["displayMode"] = "sideways"


def _break_draw_style(doc: dict[str, Any]) -> None:
    _first(doc, "timeseries")["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "curvy"


def _break_state_timeline(doc: dict[str, Any]) -> None:
    _first(doc, "state-timeline")["options"]["rowHeight"] = "tall"


def _break_variable(doc: dict[str, Any]) -> None:
    doc["templating"]["list"][0]["refresh"] = 7


def _break_panel_type(doc: dict[str, Any]) -> None:
    doc["panels"][0]["type"] = "sparkles"


BREAKS = {
    "gridPos without width": (_break_grid, "/panels/0/gridPos"),
    "schemaVersion as text": (_break_schema_version, "/schemaVersion"),
    "misspelt panel key": (_break_unknown_key, "'titel' was unexpected"),
    "query not a string": (_break_query_type, "/panels/1/targets/0/query"),
    "Flux result format": (_break_result_format, "/panels/1/targets/0/resultFormat"),
    "annotation without colour": (_break_annotation, "'iconColor' is a required property"),
    "unknown legend mode": (_break_legend, "/options/legend/displayMode"),
    "unknown draw style": (_break_draw_style, "/fieldConfig/defaults/custom/drawStyle"),
    "row height as text": (_break_state_timeline, "/options/rowHeight"),
    "variable refresh out of range": (_break_variable, "/templating/list/0/refresh"),
    "panel type without schema": (_break_panel_type, "has no schema"),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(BREAKS))
def test_schema_rejects_a_broken_dashboard(case: str, version: str) -> None:
    doc = copy.deepcopy(load("night"))
    breaker, expected = BREAKS[case]
    breaker(doc)
    found = list(validate.errors(doc, version))
    assert found, f"{case}: the schema accepted a broken dashboard"
    assert any(expected in e for e in found), found


def _script_pins() -> dict[str, tuple[str, str]]:
    """The generator script's VERSIONS table: @grafana/schema -> (generator, typescript)."""
    script = SCRIPT.read_text(encoding="utf-8")
    table = re.search(r"^VERSIONS=\(\n(.*?)^\)", script, re.M | re.S)
    assert table, "no VERSIONS=( ... ) table in the generator script"
    rows = re.findall(r'^\s*"(\S+) (\S+) (\S+)"', table.group(1), re.M)
    return {v: (g, t) for v, g, t in rows}


def test_every_version_in_the_script_is_committed() -> None:
    pins = _script_pins()
    assert len(pins) >= 2, pins  # the SDK's Grafana line and the oldest one the docs name
    assert sorted(pins, key=validate.version_key) == VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_source_matches_the_pins(version: str) -> None:
    """Each committed schema set says which @grafana/schema, ts-json-schema-generator and
    typescript it came from (with npm integrity hashes), as pinned in the generator script."""
    source = json.loads((validate.schema_dir(version) / "SOURCE.json").read_text(encoding="utf-8"))
    generator, typescript = _script_pins()[version]
    assert source["@grafana/schema"]["version"] == version
    assert source["ts-json-schema-generator"]["version"] == generator
    assert source["typescript"]["version"] == typescript
    for package in ("@grafana/schema", "ts-json-schema-generator", "typescript"):
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", source[package]["integrity"]), package


def test_newest_schema_is_the_sdk_grafana_line() -> None:
    """The Python SDK that writes the dashboards pins the newest schema's Grafana minor."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    sdk = [d for d in dev["project"]["optional-dependencies"]["dev"] if "foundation-sdk" in d]
    assert len(sdk) == 1 and "==" in sdk[0], sdk  # pinned exactly
    sdk_grafana = sdk[0].rsplit("!", 1)[1]  # '<publish timestamp>!<grafana version>'
    assert sdk_grafana.split(".")[:2] == VERSIONS[-1].split(".")[:2]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_schema_file_names_its_source(version: str) -> None:
    """A schema file carries its @grafana/schema version and generator in ``$comment``."""
    generator, typescript = _script_pins()[version]
    files = sorted(validate.schema_dir(version).rglob("*.schema.json"))
    assert len(files) == 1 + len(validate.panel_types(version))
    for path in files:
        comment = json.loads(path.read_text(encoding="utf-8"))["$comment"]
        assert f"@grafana/schema@{version} " in comment, path
        assert f"ts-json-schema-generator@{generator} " in comment, path
        assert f"typescript@{typescript})" in comment, path


@pytest.mark.parametrize("stem", STEMS)
def test_nothing_relies_on_migrations_after_39(stem: str) -> None:
    """Grafana 10.4 (dashboard schema 39) runs no migration on these version-41 files. The two
    later steps (40: a non-string ``refresh`` becomes ``""``; 41: ``timepicker.time_options``
    is dropped) must have nothing to do, so 10.4 and 11.x read the same dashboard."""
    doc = load(stem)
    assert doc["schemaVersion"] == 41
    assert isinstance(doc.get("refresh", ""), str)
    assert "time_options" not in doc.get("timepicker", {})
