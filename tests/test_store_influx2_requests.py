"""InfluxDB 2.x / 3.x / Cloud path: the exact HTTP requests influxdb-client sends.

No real 2.x/3.x server runs in CI (no package CI can install provides one), so this test
starts a small local HTTP server that records every request and answers like 2.x does
(204, or a JSON error). It checks path, org, bucket, precision, the token header, gzip
and the body, and how the sender treats each answer.
"""

from __future__ import annotations

import gzip
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sensord.config import load_config
from sensord.errors import AuthError
from sensord.store.local import LocalStore
from sensord.store.policy import Verdict
from sensord.store.sender import Sender
from sensord.store.sinks import Influx2Sink, make_sink
from tests.influx import free_port


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes

    @property
    def body(self) -> bytes:
        if self.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(self.raw_body)
        return self.raw_body


@dataclass
class Fake2x:
    """Records requests; answers with ``status``; stores lines unless they contain ``bad``
    (then 400 like 2.x's partial write: the good lines are kept)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    status: int = 204
    stored: list[bytes] = field(default_factory=list)
    buckets: tuple[str, ...] = ("sleep",)


@pytest.fixture
def fake2x() -> Iterator[Fake2x]:
    state = Fake2x()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            state.requests.append(
                Recorded(
                    "GET", parsed.path, urllib.parse.parse_qs(parsed.query), dict(self.headers), b""
                )
            )
            if parsed.path == "/ping":
                self.send_response(204)
                self.send_header("X-Influxdb-Version", "v2.7.fake")
                self.end_headers()
                return
            if self.headers.get("Authorization") != "Token good":
                payload = b'{"code":"unauthorized","message":"unauthorized access"}'
                status = 401
            else:
                payload = json.dumps({"buckets": [{"name": b} for b in state.buckets]}).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(n)
            parsed = urllib.parse.urlsplit(self.path)
            rec = Recorded(
                "POST", parsed.path, urllib.parse.parse_qs(parsed.query), dict(self.headers), raw
            )
            state.requests.append(rec)
            status, payload = state.status, b""
            if status == 204:
                lines = rec.body.splitlines(keepends=True)
                good = [x for x in lines if b"bad" not in x]
                state.stored += good
                if len(good) < len(lines):
                    status = 400
                    payload = json.dumps(
                        {"code": "invalid", "message": f"partial write error ({len(good)} written)"}
                    ).encode()
            elif status != 204:
                payload = json.dumps(
                    {
                        "code": "unauthorized" if status == 401 else "error",
                        "message": f"status {status}",
                    }
                ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


BODY = b"heart_rate,device_role=chest,participant=P-001 hr_bpm=61.5 1764021600000000000\n"


def test_write_request_is_exactly_right(fake2x: Fake2x) -> None:
    sink = Influx2Sink(fake2x.url, token="s3cr3t-tok==", org="Sleep Lab", bucket="study/raw")
    assert sink.write(BODY).verdict is Verdict.ACCEPTED
    (req,) = fake2x.requests  # one request, no hidden retries
    assert req.method == "POST"
    assert req.path == "/api/v2/write"
    assert req.query == {"org": ["Sleep Lab"], "bucket": ["study/raw"], "precision": ["ns"]}
    assert req.headers["Authorization"] == "Token s3cr3t-tok=="
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.raw_body[:2] == b"\x1f\x8b"  # really gzip on the wire
    assert req.body == BODY
    assert req.headers["Content-Type"].startswith("text/plain")


def test_without_gzip_and_other_precision(fake2x: Fake2x) -> None:
    sink = Influx2Sink(fake2x.url, token="t", org="o", bucket="b", gzip_body=False, precision="s")
    assert sink.write(b"m v=1 1764021600\n").ok
    (req,) = fake2x.requests
    assert "Content-Encoding" not in req.headers and req.raw_body == b"m v=1 1764021600\n"
    assert req.query["precision"] == ["s"]


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (400, Verdict.REFUSED),
        (401, Verdict.AUTH),
        (403, Verdict.AUTH),
        (404, Verdict.MISSING),
        (413, Verdict.TOO_LARGE),
        (429, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_answers_are_classified(fake2x: Fake2x, status: int, verdict: Verdict) -> None:
    fake2x.status = status
    out = Influx2Sink(fake2x.url, token="t", org="o", bucket="b").write(BODY)
    assert out.verdict is verdict and out.status == status
    assert f"status {status}" in out.message
    assert len(fake2x.requests) == 1  # influxdb-client does not retry behind our back


def test_unreachable_is_retry() -> None:
    out = Influx2Sink(
        f"http://127.0.0.1:{free_port()}", token="t", org="o", bucket="b", timeout_s=2
    ).write(BODY)
    assert out.verdict is Verdict.RETRY and out.status == 0


def test_sender_through_influxdb_client(fake2x: Fake2x, tmp_path: Path) -> None:
    lines = [f"m,p=a v={i} {i}".encode() for i in range(100)]
    lines[37] = b"m,p=a v=bad 37"
    with LocalStore(tmp_path / "s.sqlite") as store:
        store.add_lines(lines)
        sink = Influx2Sink(fake2x.url, token="t", org="o", bucket="b")
        report = Sender(store, sink, batch_lines=100).flush()
        assert report.finished and report.quarantined == 1
        (q,) = store.quarantined()
        assert q.line == b"m,p=a v=bad 37\n" and "partial write error" in q.message
        assert "bucket 'b'" in q.sink
    assert set(fake2x.stored) == {x + b"\n" for x in lines if b"bad" not in x}
    fake2x.status = 401
    with LocalStore(tmp_path / "t.sqlite") as store:
        store.add_lines(lines[:3])
        with pytest.raises(AuthError, match="HTTP 401"):
            Sender(store, Influx2Sink(fake2x.url, token="t", org="o", bucket="b")).flush()


def test_config_builds_the_2x_sink(tmp_path: Path, fake2x: Fake2x) -> None:
    tok = tmp_path / "token"
    tok.write_text("file-token\n")
    tok.chmod(0o600)  # secrets files others can read are refused (issue 8)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        f'[sink]\nkind = "influxdb2"\nurl = "{fake2x.url}"\norg = "lab"\nbucket = "sleep"\n'
        f'token_file = "{tok}"\ngzip = false\n'
    )
    sink = make_sink(load_config(cfg_path, env={}).sink)
    assert isinstance(sink, Influx2Sink)
    assert sink.write(BODY).ok
    assert fake2x.requests[-1].headers["Authorization"] == "Token file-token"
    assert fake2x.requests[-1].query["bucket"] == ["sleep"]


def test_doctor_on_the_2x_path(fake2x: Fake2x) -> None:
    ok = Influx2Sink(fake2x.url, token="good", org="lab", bucket="sleep").health()
    assert (ok.reachable, ok.version, ok.auth_ok, ok.target_ok) == (True, "v2.7.fake", True, True)
    req = fake2x.requests[-1]
    assert req.path == "/api/v2/buckets" and req.query == {"name": ["sleep"], "org": ["lab"]}
    bad = Influx2Sink(fake2x.url, token="bad", org="lab", bucket="sleep").health()
    assert bad.reachable and not bad.auth_ok and "unauthorized" in bad.detail
    missing = Influx2Sink(fake2x.url, token="good", org="lab", bucket="nope").health()
    assert missing.auth_ok and not missing.target_ok and "'nope' not visible" in missing.detail
    assert not any(r.method == "POST" for r in fake2x.requests)  # doctor never writes
    down = Influx2Sink(f"http://127.0.0.1:{free_port()}", token="t", org="o", bucket="b").health()
    assert not down.reachable
