"""InfluxDB sinks (I/O): 1.x over its HTTP API, 2.x/3.x/Cloud through influxdb-client.

A sink sends one body of line protocol and reports a
:class:`sensord.store.policy.WriteOutcome`; it never retries by itself (the sender
decides). Every sink writes with the explicit precision
:data:`sensord.store.schema.WIRE_PRECISION` (nanoseconds).
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from sensord.config import SinkConfig
from sensord.errors import ConfigError, StoreError
from sensord.store.policy import (
    V2_PRECISION,
    Verdict,
    WriteOutcome,
    classify_response,
    network_failure,
    server_message,
    v1_precision,
)
from sensord.store.schema import WIRE_PRECISION

log = logging.getLogger("sensord.store")


@dataclass(frozen=True)
class Health:
    """What ``sensord doctor`` reports about a sink."""

    reachable: bool
    version: str
    auth_ok: bool
    target_ok: bool
    detail: str


class Sink(Protocol):
    """Where batches go."""

    @property
    def where(self) -> str:
        """Human-readable target (URL and database/bucket) for messages."""

    def write(self, body: bytes) -> WriteOutcome:
        """Send newline-terminated line protocol (uncompressed) once."""

    def health(self) -> Health: ...

    def close(self) -> None: ...


def _gzip(body: bytes) -> bytes:
    # level 1: several times faster than the default and within a few % of its size
    # on line protocol
    return gzip.compress(body, compresslevel=1, mtime=0)


class Influx1Sink:
    """InfluxDB 1.x: ``POST /write?db=..&rp=..&precision=n``, ``/query`` with InfluxQL,
    HTTP Basic credentials (``username`` + password), optional gzip and TLS."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str = "",
        username: str = "",
        password: str = "",
        gzip_body: bool = True,
        timeout_s: float = 10.0,
        ca_bundle: str = "",
        verify_tls: bool = True,
        precision: str = WIRE_PRECISION,
    ):
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.gzip = gzip_body
        self.precision = v1_precision(precision)
        self._headers: dict[str, str] = {}
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=2,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
            ca_certs=ca_bundle or None,
        )
        if not verify_tls:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @property
    def where(self) -> str:
        rp = f", rp {self.retention_policy!r}" if self.retention_policy else ""
        return f"InfluxDB 1.x {self.url} database {self.database!r}{rp}"

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, bytes, dict[str, str]] | WriteOutcome:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            resp = self._pool.request(
                method, url, body=body, headers={**self._headers, **headers}, preload_content=True
            )
        except urllib3.exceptions.SSLError as exc:
            return WriteOutcome(
                Verdict.AUTH, 0, f"TLS failure talking to {self.url}: {exc} (check ca_bundle)"
            )
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            return network_failure(f"no answer from {self.url}: {reason}")
        return resp.status, resp.data, dict(resp.headers.items())

    def write(self, body: bytes) -> WriteOutcome:
        return self.post(self.prepare(body))

    def prepare(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """Request body and headers for ``body`` (gzip applied): the CPU part of a write,
        which a pipelining caller does while the previous request is in flight."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
            return _gzip(body), headers
        return body, headers

    def post(self, prepared: tuple[bytes, dict[str, str]]) -> WriteOutcome:
        """Send what :meth:`prepare` made."""
        params = {"db": self.database, "precision": self.precision}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        ans = self._request("POST", "/write", params, prepared[0], prepared[1])
        if isinstance(ans, WriteOutcome):
            return ans
        status, text, _ = ans
        return classify_response(status, text)

    def query(self, q: str) -> dict[str, Any]:
        """Run InfluxQL (epoch=ns); raise :class:`StoreError` with the server's message."""
        ans = self._request(
            "POST",
            "/query",
            {"db": self.database, "epoch": "ns"},
            urllib.parse.urlencode({"q": q}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        if isinstance(ans, WriteOutcome):
            raise StoreError(f"{self.where}: {ans.message}")
        status, text, _ = ans
        if status != 200:
            raise StoreError(f"{self.where}: query failed, HTTP {status}: {server_message(text)}")
        data: dict[str, Any] = json.loads(text)
        for res in data.get("results", []):
            if "error" in res:
                raise StoreError(f"{self.where}: query {q!r} failed: {res['error']}")
        return data

    def health(self) -> Health:
        ans = self._request("GET", "/ping", {}, None, {})
        if isinstance(ans, WriteOutcome):
            return Health(False, "", False, False, ans.message)
        status, _, headers = ans
        version = headers.get("X-Influxdb-Version", "")
        if status != 204:
            return Health(False, version, False, False, f"/ping answered HTTP {status}")
        try:
            data = self.query("SHOW DATABASES")
        except StoreError as exc:
            auth_bad = "401" in str(exc) or "403" in str(exc) or "authorization" in str(exc)
            return Health(True, version, not auth_bad, False, str(exc))
        names = [v[0] for s in data["results"][0].get("series", []) for v in s.get("values", [])]
        if self.database not in names:
            return Health(
                True,
                version,
                True,
                False,
                f"database {self.database!r} not found (visible: {', '.join(names) or 'none'}); "
                f'create it with CREATE DATABASE "{self.database}"',
            )
        return Health(True, version, True, True, "ok")

    def close(self) -> None:
        self._pool.clear()


class Influx2Sink:
    """InfluxDB 2.x, 3.x and Cloud through influxdb-client: ``/api/v2/write`` with
    ``org``, ``bucket``, ``precision=ns``, ``Authorization: Token ...`` and gzip."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        gzip_body: bool = True,
        timeout_s: float = 10.0,
        ca_bundle: str = "",
        verify_tls: bool = True,
        precision: str = WIRE_PRECISION,
    ):
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        if precision not in V2_PRECISION:
            raise ValueError(f"unknown precision {precision!r}; expected ns, us, ms or s")
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self._timeout_s = timeout_s
        self._verify_tls = verify_tls
        self._ca_bundle = ca_bundle
        self._precision: Any = {
            "ns": WritePrecision.NS,
            "us": WritePrecision.US,
            "ms": WritePrecision.MS,
            "s": WritePrecision.S,
        }[precision]
        self._client = InfluxDBClient(
            url=self.url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=gzip_body,
            verify_ssl=verify_tls,
            ssl_ca_cert=ca_bundle or None,
            retries=False,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    @property
    def where(self) -> str:
        return f"InfluxDB 2.x/3.x {self.url} org {self.org!r} bucket {self.bucket!r}"

    def write(self, body: bytes) -> WriteOutcome:
        from influxdb_client.rest import ApiException

        try:
            self._write.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=self._precision
            )
        except ApiException as exc:
            return classify_response(int(exc.status or 0), exc.body or exc.reason or "")
        except urllib3.exceptions.SSLError as exc:
            return WriteOutcome(Verdict.AUTH, 0, f"TLS failure talking to {self.url}: {exc}")
        except urllib3.exceptions.HTTPError as exc:
            return network_failure(f"no answer from {self.url}: {exc}")
        return WriteOutcome(Verdict.ACCEPTED, 204, "")

    def health(self) -> Health:
        """``/ping`` (reachability, version), then ``GET /api/v2/buckets?name=`` with the
        token: 401/403 = credentials refused; the bucket listed = ok. Nothing is written."""
        token = self._client.token or ""
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self._timeout_s, read=self._timeout_s),
            retries=False,
            cert_reqs="CERT_REQUIRED" if self._verify_tls else "CERT_NONE",
            ca_certs=self._ca_bundle or None,
        )
        try:
            ping = pool.request("GET", f"{self.url}/ping")
            version = ping.headers.get("X-Influxdb-Version", "")
            if ping.status >= 300:
                return Health(False, version, False, False, f"/ping answered HTTP {ping.status}")
            query = urllib.parse.urlencode({"name": self.bucket, "org": self.org})
            ans = pool.request(
                "GET",
                f"{self.url}/api/v2/buckets?{query}",
                headers={"Authorization": f"Token {token}"},
            )
        except urllib3.exceptions.HTTPError as exc:
            return Health(False, "", False, False, f"no answer from {self.url}: {exc}")
        finally:
            pool.clear()
        if ans.status in (401, 403):
            return Health(True, version, False, False, server_message(ans.data))
        if ans.status != 200:
            return Health(
                True,
                version,
                True,
                False,
                f"cannot list buckets (HTTP {ans.status}: {server_message(ans.data)}); "
                "InfluxDB 3.x has no bucket API -- try `sensord push`",
            )
        names = [b.get("name") for b in json.loads(ans.data or b"{}").get("buckets", [])]
        if self.bucket not in names:
            return Health(
                True,
                version,
                True,
                False,
                f"bucket {self.bucket!r} not visible in org {self.org!r} with this token",
            )
        return Health(True, version, True, True, "ok")

    def close(self) -> None:
        self._client.close()


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_warnings(cfg: SinkConfig) -> list[str]:
    """What is unsafe about how this sink reaches its server (empty when nothing is)."""
    out: list[str] = []
    if cfg.kind == "none":
        return out
    if not cfg.verify_tls:
        out.append(
            f"TLS certificate verification is OFF for {cfg.url} ([sink] verify_tls = false): "
            "anyone between this device and the server can read the data and the credentials; "
            "trust the server's certificate with [sink] ca_bundle instead"
        )
    if cfg.url.startswith("http://") and not _is_loopback(cfg.url):
        out.append(
            f"{cfg.url} is plain HTTP to another machine: data and credentials travel "
            "unencrypted; use https:// (see docs/security.md)"
        )
    return out


def make_sink(cfg: SinkConfig) -> Sink | None:
    """The sink the config asks for (``None`` for ``kind = "none"``).

    Every unsafe transport setting (verification off, plain HTTP off this machine) is
    logged as a WARNING each time a sink is made.
    """
    if cfg.kind == "none":
        return None
    for warning in transport_warnings(cfg):
        log.warning("%s", warning)
    if cfg.kind == "influxdb1":
        return Influx1Sink(
            cfg.url,
            cfg.database,
            retention_policy=cfg.retention_policy,
            username=cfg.username,
            password=cfg.password() if cfg.username else "",
            gzip_body=cfg.gzip,
            timeout_s=cfg.timeout_s,
            ca_bundle=cfg.ca_bundle,
            verify_tls=cfg.verify_tls,
        )
    if cfg.kind == "influxdb2":
        token = cfg.token()
        if not token:
            raise ConfigError(
                "influxdb2 needs a token: set SENSORD_SINK_TOKEN, token_env or token_file",
                key="sink.token_file",
            )
        return Influx2Sink(
            cfg.url,
            token=token,
            org=cfg.org,
            bucket=cfg.bucket,
            gzip_body=cfg.gzip,
            timeout_s=cfg.timeout_s,
            ca_bundle=cfg.ca_bundle,
            verify_tls=cfg.verify_tls,
        )
    raise ConfigError(f"unknown sink kind {cfg.kind!r}", key="sink.kind")
