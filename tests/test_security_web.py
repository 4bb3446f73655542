"""Participant page hardening (issue 8): every route is closed without a session, security
headers on every response (404, 405, 413, 500, static files, login page), sessions expire,
no serving before a PIN exists (whatever the address).

The app is the real aiohttp application on 127.0.0.1 (free port) over the real local store;
the routes are enumerated from the app's router, so a route added later is covered too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sensord import annotate as an
from sensord.config import load_config
from sensord.errors import ConfigError
from sensord.web.app import (
    PUBLIC,
    SESSION_COOKIE,
    WebState,
    bound_port,
    make_app,
    start,
    start_from_config,
)
from sensord.web.auth import PinFile, SessionStore
from tests.annotate_helpers import open_book

PIN = "482915"
# What the issue asks for, written out here rather than imported from the app.
REQUIRED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
CSP_MUST = ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'")


def check_headers(resp: aiohttp.ClientResponse, what: str) -> None:
    for key, value in REQUIRED_HEADERS.items():
        assert resp.headers.get(key) == value, f"{what}: {key} = {resp.headers.get(key)!r}"
    csp = resp.headers.get("Content-Security-Policy", "")
    for part in CSP_MUST:
        assert part in csp, f"{what}: CSP {csp!r} lacks {part!r}"
    assert "script-src" not in csp or "'unsafe" not in csp, what


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0

    def __call__(self) -> float:
        return self.s


def routes(state: WebState) -> list[tuple[str, str]]:
    """(method, path) of every route of the app as built for serving."""
    app = make_app(state)
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        assert isinstance(path, str), f"route {route!r} has no plain path"
        path = re.sub(r"\{[^}]+\}", "x", path)  # a dynamic segment gets a sample value
        out.append((route.method, path))
    return sorted(set(out))


def with_server(
    tmp_path: Path,
    scenario: Callable[[str, WebState], Awaitable[None]],
    *,
    book: Any = None,
    sessions: SessionStore | None = None,
    clock: Clock | None = None,
) -> None:
    pin = PinFile(tmp_path / "web-pin.json")
    if not pin.exists():
        pin.save(PIN)
    real_book = open_book(tmp_path / "sensord.sqlite")
    state = WebState(
        book=book or real_book,
        pin=pin,
        tz="Europe/Berlin",
        participant="P07",
        sessions=sessions or SessionStore(),
        mono_s=clock or Clock(),
    )

    async def main() -> None:
        runner = await start(state, "127.0.0.1", 0)
        try:
            await scenario(f"http://127.0.0.1:{bound_port(runner)}", state)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        real_book.close()


async def login(http: aiohttp.ClientSession, url: str, pin: str = PIN) -> aiohttp.ClientResponse:
    async with http.get(url + "/login") as resp:
        page = await resp.text()
    token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert token is not None
    async with http.post(
        url + "/login", data={"login_token": token[1], "pin": pin}, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp


def client(cookies: dict[str, str] | None = None) -> aiohttp.ClientSession:
    """A client that keeps cookies of a bare IP address (aiohttp's default jar does not)."""
    return aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True))


def is_login_page(body: str) -> bool:
    return 'action="/login"' in body and 'name="pin"' in body


def test_every_route_without_a_session_gives_only_the_login_page(tmp_path: Path) -> None:
    seen: list[str] = []

    async def scenario(url: str, state: WebState) -> None:
        table = routes(state)
        posts = {p for m, p in table if m == "POST"}
        gets = {p for m, p in table if m == "GET"}
        assert {"/", "/diary"} <= gets and {"/pain", "/substance", "/diary"} <= posts
        # a route that does not exist is treated like a private one
        table += [("GET", "/no-such-page"), ("POST", "/no-such-page"), ("GET", "/static/x")]
        stale = {SESSION_COOKIE: "forged-or-expired-token"}
        for cookies in ({}, stale):
            async with client(cookies) as http:
                for method, path in table:
                    form = {"csrf": "x", "rating": "5", "context": "bedtime", "name": "kratom"}
                    async with http.request(
                        method, url + path, data=form if method == "POST" else None,
                        allow_redirects=False,
                    ) as resp:  # fmt: skip
                        body = await resp.text()
                        what = f"{method} {path} cookies={sorted(cookies)}"
                        seen.append(what)
                        check_headers(resp, what)
                        if method == "HEAD":  # no body: the GET's status and headers
                            assert resp.status in (200, 303) and body == "", what
                            if resp.status == 303:
                                assert resp.headers["Location"] == "/login", what
                            continue
                        if path in PUBLIC:
                            if path == "/login":  # the form, or the form again with a message
                                assert is_login_page(body), what
                            else:  # style sheet and icon: no participant data
                                assert resp.status == 200 and "P07" not in body, what
                                assert "kratom" not in body.lower(), what
                            continue
                        if method in ("GET", "HEAD"):
                            assert resp.status == 303, what
                            assert resp.headers["Location"] == "/login", what
                        else:
                            assert resp.status == 401 and is_login_page(body), what
        # nothing was stored by any of these requests
        assert state.book.history() == []

    with_server(tmp_path, scenario)
    assert len(seen) >= 2 * 16  # every route, twice (no cookie, a stale one)


def test_security_headers_on_every_kind_of_response(tmp_path: Path) -> None:
    class BrokenBook:
        def history(self) -> list[an.Annotation]:
            raise RuntimeError("store on fire")

        def append(self, records: Sequence[an.Annotation]) -> None:
            raise RuntimeError("store on fire")

    statuses: set[int] = set()

    async def scenario(url: str, state: WebState) -> None:
        async with client() as http:
            for path in ("/login", "/static/app.css", "/favicon.svg"):
                async with http.get(url + path) as resp:
                    check_headers(resp, path)
                    statuses.add(resp.status)
            bad = await login(http, url, "000000")  # wrong PIN: the login page again, 401
            assert bad.status == 401
            check_headers(bad, "wrong PIN")
            statuses.add(bad.status)
            ok = await login(http, url)
            assert ok.status == 303
            check_headers(ok, "login")
            statuses.add(ok.status)
            cases: list[tuple[str, str, Any]] = [
                ("GET", "/", None),  # the book raises: a 500 of our own
                ("GET", "/no-such-page", None),  # 404
                ("PUT", "/", None),  # 405
                ("POST", "/pain", {"csrf": "x", "note": "x" * 200_000}),  # 413: over the body limit
                ("POST", "/pain", {"rating": "5"}),  # 403: no CSRF token
            ]
            for method, path, data in cases:
                async with http.request(
                    method, url + path, data=data, allow_redirects=False
                ) as resp:
                    body = await resp.text()
                    check_headers(resp, f"{method} {path} -> {resp.status}")
                    statuses.add(resp.status)
                    assert "store on fire" not in body  # no internals in the page

    with_server(tmp_path, scenario, book=BrokenBook())
    assert {200, 401, 303, 500, 404, 405, 413, 403} <= statuses


def test_sessions_expire_when_idle_and_after_their_lifetime(tmp_path: Path) -> None:
    clock = Clock()

    async def still_in(http: aiohttp.ClientSession, url: str) -> bool:
        async with http.get(url + "/", allow_redirects=False) as resp:
            return resp.status == 200

    async def scenario(url: str, state: WebState) -> None:
        async with client() as http:
            await login(http, url)
            assert await still_in(http, url)
            clock.s += 3599  # just inside the idle limit
            assert await still_in(http, url)
            clock.s += 3601  # an hour and a bit unused: out
            assert not await still_in(http, url)
        async with client() as http:
            start_s = clock.s
            await login(http, url)
            while clock.s - start_s < 6 * 3600 - 1800:  # active every 30 min for ~6 h
                clock.s += 1800
                assert await still_in(http, url), clock.s - start_s
            clock.s += 1801  # just over 6 h after login: out, despite the activity
            assert not await still_in(http, url)
        cookie = next(c for c in http.cookie_jar if c.key == SESSION_COOKIE)
        assert cookie["httponly"] and cookie["samesite"] == "Strict"

    with_server(
        tmp_path, scenario, sessions=SessionStore(idle_s=3600, max_age_s=6 * 3600), clock=clock
    )


def test_session_lifetimes_come_from_the_config(tmp_path: Path) -> None:
    text = (
        f'participant_id = "P07"\ndata_dir = "{tmp_path / "data"}"\n'
        "[web]\nsession_idle_h = 2\nsession_max_h = 48\n"
    )
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml", env={})
    cfg.ensure_data_dir()
    PinFile(cfg.data_path / "web-pin.json").save(PIN)

    async def main() -> SessionStore:
        server = await start_from_config(cfg, host="127.0.0.1", port=0)
        try:
            app = server.runner.app
            return next(v for k, v in app.items() if isinstance(v, WebState)).sessions
        finally:
            await server.stop()

    sessions = asyncio.run(main())
    assert (sessions.idle_s, sessions.max_age_s) == (2 * 3600, 48 * 3600)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("session_max_h = 48", "session_max_h = 1"))
    with pytest.raises(ConfigError, match="session_idle_h <= session_max_h"):
        load_config(bad, env={})


def test_no_serving_before_a_pin_exists_even_on_a_lan_address(tmp_path: Path) -> None:
    """A LAN address (192.0.2.1, TEST-NET-1: never assigned here, so even a wrong
    implementation could not really listen on it) is refused for want of a PIN before
    any socket is opened: the error is the PIN's, not the operating system's."""
    (tmp_path / "c.toml").write_text(
        f'participant_id = "P07"\ndata_dir = "{tmp_path / "data"}"\n[web]\nbind = "192.0.2.1"\n'
    )
    cfg = load_config(tmp_path / "c.toml", env={})
    with pytest.raises(ConfigError, match="before a PIN exists"):
        asyncio.run(start_from_config(cfg, port=0))
    state = WebState(
        book=open_book(tmp_path / "s.sqlite"), pin=PinFile(tmp_path / "none.json"),
        tz="UTC", participant="P07",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="before a PIN exists"):
        asyncio.run(start(state, "192.0.2.1", 0))
