"""The InfluxDB test fixture itself: a real influxd, isolated databases, restart, auth."""

from __future__ import annotations

import urllib.parse

from tests.influx import ADMIN_PASSWORD, ADMIN_USER, InfluxDB, http, running_server


def test_fresh_database_roundtrip(influxdb: InfluxDB) -> None:
    assert influxdb.measurements() == []
    ans = influxdb.write("m,participant=p1 v=1.5,n=3i 1700000000000000000\n")
    assert ans.status == 204, ans.text
    rows = influxdb.rows("m")
    assert rows == [{"time": 1700000000000000000, "v": 1.5, "n": 3, "participant": "p1"}]
    assert influxdb.count("m", "v") == 1
    assert influxdb.field_keys("m") == {"n": "integer", "v": "float"}
    assert influxdb.tag_keys("m") == ["participant"]


def test_each_test_gets_its_own_database(influxdb: InfluxDB) -> None:
    # the previous test's point must not be visible here
    assert influxdb.count("m", "v") == 0


def test_stop_and_restart_keeps_data_and_port() -> None:
    with running_server() as server:
        server.create_database("keep")
        assert server.write("keep", "m v=7i 1000000000").status == 204
        url = server.url
        server.stop()
        assert not server.running
        server.start()
        assert server.url == url
        rows = server.query('SELECT * FROM "m"', db="keep").rows()
        assert rows == [{"time": 1000000000, "v": 7}]


def test_auth_server_refuses_anonymous_and_accepts_admin(influxdb_auth) -> None:  # type: ignore[no-untyped-def]
    server = influxdb_auth.server
    anon = http("POST", server.url + "/write?db=" + influxdb_auth.name, body=b"m v=1 1")
    assert anon.status == 401
    q = urllib.parse.urlencode(
        {
            "db": influxdb_auth.name,
            "u": influxdb_auth.user,
            "p": influxdb_auth.password,
            "precision": "ns",
        }
    )
    ok = http("POST", server.url + "/write?" + q, body=b"m v=1 1")
    assert ok.status == 204, ok.text
    bad = urllib.parse.urlencode(
        {"db": influxdb_auth.name, "u": ADMIN_USER, "p": ADMIN_PASSWORD + "x"}
    )
    assert http("POST", server.url + "/write?" + bad, body=b"m v=1 1").status == 401
    assert influxdb_auth.count("m", "v") == 1
