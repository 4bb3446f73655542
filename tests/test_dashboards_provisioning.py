"""The provisioning examples point Grafana at the data source the dashboards use, and a
read-only InfluxDB user (as the 1.x example asks for) is enough for every dashboard query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dashboards import check, generate
from tests import dashboard_data as dd
from tests.influx import InfluxDB

ROOT = Path(__file__).resolve().parents[1]
PROV = ROOT / "dashboards" / "provisioning"
MS = 1_000_000


def _load(rel: str) -> dict[str, Any]:
    doc = yaml.safe_load((PROV / rel).read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    return dict(doc)


def test_datasources_use_the_dashboards_uid_and_influxql() -> None:
    files = sorted(p.relative_to(PROV).as_posix() for p in (PROV / "datasources").glob("*.yaml"))
    assert files == ["datasources/influxdb-1x.yaml", "datasources/influxdb-2x-dbrp.yaml"]
    for rel in files:
        (ds,) = _load(rel)["datasources"]
        assert ds["uid"] == generate.DATASOURCE_UID
        assert ds["type"] == "influxdb"
        assert ds["jsonData"]["version"] == "InfluxQL"  # never Flux: must work on 1.x and 3.x
        assert ds["jsonData"]["dbName"] == "${SENSORD_INFLUX_DB}"
        secrets = json.dumps(ds.get("secureJsonData", {}))
        assert "${SENSORD_INFLUX_" in secrets  # secrets come from the environment, not the file
    (v2,) = _load("datasources/influxdb-2x-dbrp.yaml")["datasources"]
    assert v2["jsonData"]["httpHeaderName1"] == "Authorization"
    assert v2["secureJsonData"]["httpHeaderValue1"].startswith("Token ")
    assert "dbrp create" in (PROV / "datasources/influxdb-2x-dbrp.yaml").read_text()


def test_dashboard_provider_loads_a_folder_of_json() -> None:
    (provider,) = _load("dashboards/sensord.yaml")["providers"]
    assert provider["type"] == "file" and provider["folder"] == "sensord"
    assert provider["options"]["path"].startswith("/")
    assert provider["allowUiUpdates"] is False  # the JSON in git stays the source of truth


def test_a_read_only_user_can_run_every_dashboard(
    dashboard_study: tuple[InfluxDB, dd.Study],
) -> None:
    db, study = dashboard_study
    server = db.server
    user, password = f"grafana_{db.name}", "read 'only' pass"
    # exactly what the 1.x provisioning example tells the operator to run
    server.create_user(user, password, db=db.name, privilege="READ")
    try:

        def run(q: str) -> dict[str, Any]:
            ans = server.raw_query(q, db=db.name, epoch="ms", auth=(user, password))
            assert ans.status == 200, ans.text
            return dict(json.loads(ans.body))

        docs, targets = generate.build_all()
        a, b = study.span_ns
        for stem in ("night", "person", "operations"):
            if stem == "night":
                start, end = study.nights[("p01", dd.NIGHTS[-1])]
                from_ms, to_ms = (start - 3 * 3600 * 10**9) // MS, (end + 3600 * 10**9) // MS
            else:
                from_ms, to_ms = a // MS, b // MS
            result = check.check_dashboard(
                docs[stem],
                [t for t in targets if t.dashboard == stem],
                run,
                from_ms=from_ms,
                to_ms=to_ms,
                prefer={"participant": "p01", "night": dd.NIGHTS[-1]},
            )
            assert result.problems == [], stem
        # ... and it cannot change anything
        denied = server.raw_query('DROP MEASUREMENT "night"', db=db.name, auth=(user, password))
        assert denied.status == 403 or b"not authorized" in denied.body
        assert db.count("night", "tst_min") == len(study.nights)
    finally:
        server.query(f'DROP USER "{user}"')
