"""Shared pytest fixtures.

InfluxDB (area: store) -- a real Debian ``influxd`` started by the tests, see ``tests/influx.py``:

* ``influx_server``: session-scoped server without auth (started on first use).
* ``influxdb``: a fresh database on it per test (dropped afterwards); ``.url``, ``.name``,
  ``.query(q)``, ``.rows(measurement)``, ``.count(measurement, field)``, ``.write(lines)``.
* ``influx_auth_server`` / ``influxdb_auth``: the same with ``auth-enabled = true``; the
  admin is ``tests.influx.ADMIN_USER``/``ADMIN_PASSWORD`` and ``influxdb_auth.user`` /
  ``.password`` is a non-admin user with ALL on that database.

Screenshots (area: annotate): ``screenshots`` is where the browser and report tests save the
images the docs show: ``docs/screenshots/`` when ``UPDATE_DOCS_SCREENSHOTS=1`` is set,
otherwise a temporary directory, so that a test run leaves the working tree as it was (not a
``SENSORD_*`` variable: sensord refuses unknown ones as typos of its settings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.influx import InfluxDB, InfluxServer, unique_db_name

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (module docstring); the directory exists."""
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(root=tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influx_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(root=tmp_path_factory.mktemp("influxd_auth"), auth=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxdb(influx_server: InfluxServer) -> Iterator[InfluxDB]:
    if not influx_server.running:  # a previous test stopped it on purpose
        influx_server.start()
    db = InfluxDB(influx_server, unique_db_name())
    influx_server.create_database(db.name)
    yield db
    if influx_server.running:
        influx_server.drop_database(db.name)


@dataclass
class AuthDB(InfluxDB):
    user: str = ""
    password: str = ""


@pytest.fixture
def influxdb_auth(influx_auth_server: InfluxServer) -> Iterator[AuthDB]:
    if not influx_auth_server.running:
        influx_auth_server.start()
    name = unique_db_name()
    db = AuthDB(influx_auth_server, name, user=f"u_{name}", password="pw, with 'quotes' = ok")
    influx_auth_server.create_database(name)
    influx_auth_server.create_user(db.user, db.password, db=name)
    yield db
    if influx_auth_server.running:
        influx_auth_server.drop_database(name)
        influx_auth_server.query(f'DROP USER "{db.user}"')


# --- dashboards (issue 7) ----------------------------------------------------------------
@pytest.fixture(scope="session")
def dashboard_study(
    influx_auth_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[InfluxDB, object]]:
    """The simulated two-participant study of ``tests/dashboard_data.py``, written once per
    session into a database on the auth-enabled server (queried as admin; the provisioning
    test adds a read-only user)."""
    from tests import dashboard_data

    if not influx_auth_server.running:
        influx_auth_server.start()
    db = InfluxDB(influx_auth_server, unique_db_name("dash"))
    influx_auth_server.create_database(db.name)
    from tests.influx import ADMIN_PASSWORD, ADMIN_USER

    study = dashboard_data.fill(
        db, tmp_path_factory.mktemp("dash"), auth=(ADMIN_USER, ADMIN_PASSWORD)
    )
    yield db, study
    if influx_auth_server.running:
        influx_auth_server.drop_database(db.name)
