"""Shared pytest fixtures.

InfluxDB (area: store) -- a real Debian ``influxd`` started by the tests, see ``tests/influx.py``:

* ``influx_server``: session-scoped server without auth (started on first use).
* ``influxdb``: a fresh database on it per test (dropped afterwards); ``.url``, ``.name``,
  ``.query(q)``, ``.rows(measurement)``, ``.count(measurement, field)``, ``.write(lines)``.
* ``influx_auth_server`` / ``influxdb_auth``: the same with ``auth-enabled = true``; the
  admin is ``tests.influx.ADMIN_USER``/``ADMIN_PASSWORD`` and ``influxdb_auth.user`` /
  ``.password`` is a non-admin user with ALL on that database.

Images the docs show (areas: annotate, dashboards): ``docs_images`` is the directory the
browser, report and dashboard tests save them under, as they lie under ``docs/``
(``screenshots/``, ``dashboards/``): ``docs/`` itself when ``UPDATE_DOCS_IMAGES=1`` is set,
otherwise a temporary copy of that layout, so that a test run leaves the working tree as it
was (not a ``SENSORD_*`` variable: sensord refuses unknown ones as typos of its settings).
``screenshots`` is its ``screenshots/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.influx import InfluxDB, InfluxServer, unique_db_name

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOCS_IMAGE_DIRS = ("screenshots", "dashboards")


@pytest.fixture(scope="session")
def docs_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the docs' images go (module docstring); its subdirectories exist."""
    root = DOCS if os.environ.get("UPDATE_DOCS_IMAGES") == "1" else tmp_path_factory.mktemp("docs")
    for sub in DOCS_IMAGE_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def screenshots(docs_images: Path) -> Path:
    """``docs_images / "screenshots"``."""
    return docs_images / "screenshots"


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
