"""A real InfluxDB 1.x (Debian's ``influxd``) for tests: start, query, stop.

Each :class:`InfluxServer` runs its own ``influxd`` on 127.0.0.1 with a temporary
config, free ports (HTTP and the meta/backup bind address) and temporary meta, data
and WAL directories, so several test runs on one machine never collide. Readiness
is decided from the child's own log ("Listening on HTTP" with our address) and a
``/ping``, never from a port that another run's server might be answering on.

Used by the fixtures in ``tests/conftest.py``; other areas' tests reuse them::

    def test_something(influxdb):          # a fresh database on the session's server
        influxdb.write("m,participant=p1 v=1i 1700000000000000000")
        assert influxdb.count("m", "v") == 1

Only the standard library is used (urllib), so the helpers can check sensord's own
HTTP code independently of it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
ADMIN_USER = "sensord_admin"
ADMIN_PASSWORD = "admin-pass-' \\ ünï"


class InfluxStartError(RuntimeError):
    """``influxd`` did not come up; carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGKILL the child when the test process dies (no orphan influxd)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


CONFIG_TEMPLATE = """\
reporting-enabled = false
bind-address = "127.0.0.1:{bind_port}"

[meta]
  dir = "{root}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  index-version = "inmem"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  max-series-per-database = 1000000
  max-values-per-tag = 100000

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  https-enabled = {https}
  https-certificate = "{cert}"
  https-private-key = "{key}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = {max_body_size}

[logging]
  level = "info"
  suppress-logo = true

[continuous_queries]
  enabled = false
"""


@dataclass
class QueryResult:
    """Decoded ``/query`` answer: one entry per statement, each a list of series dicts."""

    raw: dict[str, Any]

    def series(self, statement: int = 0) -> list[dict[str, Any]]:
        results = self.raw.get("results", [])
        if statement >= len(results):
            return []
        res = results[statement]
        if "error" in res:
            raise InfluxQueryError(res["error"])
        return list(res.get("series", []))

    def rows(self, statement: int = 0) -> list[dict[str, Any]]:
        """All rows of all series as dicts (column -> value), tags merged in."""
        out: list[dict[str, Any]] = []
        for s in self.series(statement):
            tags = s.get("tags", {}) or {}
            cols = s["columns"]
            for values in s.get("values", []):
                row = dict(zip(cols, values, strict=True))
                row.update(tags)
                out.append(row)
        return out


class InfluxQueryError(RuntimeError):
    """The server answered a query with an error."""


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> HttpAnswer:
    """One HTTP request with urllib; error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        # the test servers may use a self-signed certificate: the helpers do not verify it
        # (sensord's sinks do, and tests check that)
        ctx = ssl._create_unverified_context() if url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            return HttpAnswer(resp.status, resp.read(), dict(resp.headers.items()))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(), dict(exc.headers.items()))


@dataclass
class InfluxServer:
    """One private ``influxd`` process. ``start()`` / ``stop()`` may be called repeatedly;
    data survives a stop (same directories, same ports) so tests can simulate outages."""

    root: Path
    auth: bool = False
    max_body_size: int = 25_000_000
    tls: tuple[Path, Path] | None = None
    """(certificate, private key) PEM files: serve HTTPS instead of HTTP."""
    http_port: int = 0
    bind_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log_lines: list[str] = field(default_factory=list)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.root / "influxd.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------
    def start(self, *, timeout_s: float = 30.0, attempts: int = 5) -> InfluxServer:
        if self.running:
            return self
        last: Exception | None = None
        keep_ports = self.http_port != 0
        for _ in range(attempts):
            if not keep_ports:
                self.http_port, self.bind_port = free_port(), free_port()
                while self.bind_port == self.http_port:
                    self.bind_port = free_port()
            try:
                self._spawn(timeout_s)
                if self.auth:
                    self._ensure_admin()
                return self
            except InfluxStartError as exc:
                last = exc
                self._kill()
                if "address already in use" not in str(exc):
                    break
                keep_ports = False  # someone took our port: pick new ones
        raise InfluxStartError(f"influxd failed to start: {last}")

    def _spawn(self, timeout_s: float) -> None:
        for d in ("meta", "data", "wal"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        conf = self.root / "influxdb.conf"
        conf.write_text(
            CONFIG_TEMPLATE.format(
                root=self.root,
                bind_port=self.bind_port,
                http_port=self.http_port,
                auth="true" if self.auth else "false",
                max_body_size=self.max_body_size,
                https="true" if self.tls else "false",
                cert=self.tls[0] if self.tls else "",
                key=self.tls[1] if self.tls else "",
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        self._log_lines = []
        self.proc = subprocess.Popen(
            [INFLUXD, "run", "-config", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,  # PDEATHSIG + own session
        )
        listening = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc, listening), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise InfluxStartError(self._tail())
            if listening.wait(0.05):
                break
        else:
            raise InfluxStartError("timeout waiting for 'Listening on HTTP'\n" + self._tail())
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise InfluxStartError(self._tail())
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/ping", timeout_s=2).status == 204:
                    return
            time.sleep(0.05)
        raise InfluxStartError("timeout waiting for /ping\n" + self._tail())

    def _pump(self, proc: subprocess.Popen[bytes], listening: threading.Event) -> None:
        assert proc.stdout is not None
        needle = f"127.0.0.1:{self.http_port}"
        with open(self.log_path, "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace")
                with self._log_lock:
                    self._log_lines.append(line)
                    del self._log_lines[:-200]
                if "Listening on HTTP" in line and needle in line:
                    listening.set()

    def _tail(self) -> str:
        with self._log_lock:
            return "".join(self._log_lines[-30:])

    def _ensure_admin(self) -> None:
        # With auth enabled and no user yet, InfluxDB 1.x allows creating the first admin.
        pw = _quote_str(ADMIN_PASSWORD)
        q = f"CREATE USER {ADMIN_USER} WITH PASSWORD {pw} WITH ALL PRIVILEGES"
        ans = self.raw_query(q, method="POST", auth=(ADMIN_USER, ADMIN_PASSWORD))
        if ans.status != 200 or b'"error"' in ans.body:
            raise InfluxStartError(f"cannot create admin user: {ans.status} {ans.text}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s. Data directories are kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash of the server, not a clean stop)."""
        self._kill()

    # -- HTTP helpers (auth as admin when the server has auth enabled) ---------------
    def _auth_headers(self, auth: tuple[str, str] | None) -> dict[str, str]:
        """HTTP Basic credentials (admin by default when auth is on)."""
        if auth is None and self.auth:
            auth = (ADMIN_USER, ADMIN_PASSWORD)
        if not auth:
            return {}
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def raw_query(
        self,
        q: str,
        *,
        db: str | None = None,
        method: str = "POST",
        epoch: str = "ns",
        auth: tuple[str, str] | None = None,
    ) -> HttpAnswer:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        body = urllib.parse.urlencode(params).encode()
        return http(
            method,
            self.url + "/query",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                **self._auth_headers(auth),
            },
        )

    def query(self, q: str, *, db: str | None = None, epoch: str = "ns") -> QueryResult:
        """Run InfluxQL; raise :class:`InfluxQueryError` on any error."""
        ans = self.raw_query(q, db=db, epoch=epoch)
        if ans.status != 200:
            raise InfluxQueryError(f"HTTP {ans.status}: {ans.text}")
        data = json.loads(ans.body)
        for res in data.get("results", []):
            if "error" in res:
                raise InfluxQueryError(res["error"])
        return QueryResult(data)

    def write(self, db: str, lines: str | bytes, *, precision: str = "ns") -> HttpAnswer:
        """POST line protocol to ``/write`` (returns the answer, does not raise)."""
        body = lines.encode() if isinstance(lines, str) else lines
        params = {"db": db, "precision": precision}
        return http(
            "POST",
            self.url + "/write?" + urllib.parse.urlencode(params),
            body=body,
            headers=self._auth_headers(None),
        )

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE {quote_ident(name)}")

    def create_user(self, user: str, password: str, *, db: str, privilege: str = "ALL") -> None:
        self.query(f"CREATE USER {quote_ident(user)} WITH PASSWORD {_quote_str(password)}")
        self.query(f"GRANT {privilege} ON {quote_ident(db)} TO {quote_ident(user)}")


def quote_ident(name: str) -> str:
    """InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_str(value: str) -> str:
    """InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


quote_str = _quote_str


@dataclass
class InfluxDB:
    """One database on an :class:`InfluxServer`, with query helpers for assertions."""

    server: InfluxServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url

    def query(self, q: str, *, epoch: str = "ns") -> QueryResult:
        return self.server.query(q, db=self.name, epoch=epoch)

    def write(self, lines: str | bytes, *, precision: str = "ns") -> HttpAnswer:
        return self.server.write(self.name, lines, precision=precision)

    def rows(self, measurement: str, where: str = "") -> list[dict[str, Any]]:
        """Every point of ``measurement`` (all fields, ``time`` in int ns), tags included."""
        clause = f" WHERE {where}" if where else ""
        return self.query(f"SELECT * FROM {quote_ident(measurement)}{clause} GROUP BY *").rows()

    def count(self, measurement: str, fieldname: str, where: str = "") -> int:
        """``COUNT(field)`` over all time (0 when the measurement does not exist)."""
        clause = f" WHERE {where}" if where else ""
        res = self.query(
            f"SELECT COUNT({quote_ident(fieldname)}) FROM {quote_ident(measurement)}{clause}"
        )
        rows = res.rows()
        return int(rows[0]["count"]) if rows else 0

    def measurements(self) -> list[str]:
        return [r["name"] for r in self.query("SHOW MEASUREMENTS").rows()]

    def tag_keys(self, measurement: str) -> list[str]:
        rows = self.query(f"SHOW TAG KEYS FROM {quote_ident(measurement)}").rows()
        return sorted(r["tagKey"] for r in rows)

    def field_keys(self, measurement: str) -> dict[str, str]:
        rows = self.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}").rows()
        return {r["fieldKey"]: r["fieldType"] for r in rows}

    def series_count(self) -> int:
        return len(self.query("SHOW SERIES").rows())


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (``cryptography``), as (cert, key) paths."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def unique_db_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def running_server(*, auth: bool = False, **kwargs: Any) -> Iterator[InfluxServer]:
    """A private server in a temporary directory, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="sensord-influxd-"))
    server = InfluxServer(root=root, auth=auth, **kwargs)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
