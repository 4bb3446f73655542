"""Every dashboard validates against the JSON schema generated from Grafana's own types."""

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


def load(stem: str) -> dict[str, Any]:
    return json.loads((ROOT / "dashboards" / f"{stem}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("stem", STEMS)
def test_committed_dashboard_validates(stem: str) -> None:
    doc = load(stem)
    assert list(validate.errors(doc)) == []
    # the panel types used are all covered by a panel-options schema
    assert {p["type"] for p in doc["panels"]} <= set(validate.panel_types())


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


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_schema_rejects_a_broken_dashboard(case: str) -> None:
    doc = copy.deepcopy(load("night"))
    breaker, expected = BREAKS[case]
    breaker(doc)
    found = list(validate.errors(doc))
    assert found, f"{case}: the schema accepted a broken dashboard"
    assert any(expected in e for e in found), found


def test_schema_source_matches_the_pins() -> None:
    """The committed schema says which @grafana/schema it came from; the generator script and
    the Python SDK pin the same Grafana minor version."""
    source = json.loads((ROOT / "dashboards/schema/SOURCE.json").read_text(encoding="utf-8"))
    script = (ROOT / "tools/gen_dashboard_schema.sh").read_text(encoding="utf-8")
    pinned = re.search(r"^GRAFANA_SCHEMA_VERSION=(\S+)", script, re.M)
    assert pinned and source["@grafana/schema"]["version"] == pinned.group(1)
    assert source["@grafana/schema"]["integrity"].startswith("sha512-")
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    sdk = [d for d in dev["project"]["optional-dependencies"]["dev"] if "foundation-sdk" in d]
    assert len(sdk) == 1 and "==" in sdk[0], sdk  # pinned exactly
    sdk_grafana = sdk[0].rsplit("!", 1)[1]  # '<publish timestamp>!<grafana version>'
    assert sdk_grafana.split(".")[:2] == pinned.group(1).split(".")[:2]
