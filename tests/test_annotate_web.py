"""The participant page in a real headless Chromium (Debian's ``chromium``, via Playwright).

The server is the real aiohttp app on 127.0.0.1 (free port) in a background thread,
storing into the real local store; the browser taps the buttons a participant would.
Screenshots of the main screens at phone size go to the ``screenshots`` directory
(``docs/screenshots/`` with ``UPDATE_DOCS_IMAGES=1``; ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sensord import annotate as an
from sensord.errors import ConfigError
from sensord.web.app import SECURITY_HEADERS, WebState, bound_port, start
from sensord.web.auth import LoginLimiter, PinFile
from tests.annotate_helpers import afternoon_tz, open_book

PIN = "482915"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


class Server:
    """The web app on its own event loop in a thread."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(start(state, "127.0.0.1", 0), self.loop)
        self.runner = fut.result(10)
        self.url = f"http://127.0.0.1:{bound_port(self.runner)}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    pin = PinFile(tmp_path / "web-pin.json")
    pin.save(PIN)
    tz = afternoon_tz()
    db = tmp_path / "sensord.sqlite"
    book = open_book(db)
    # Yesterday evening's kratom, so the page offers it as a one-tap entry: yesterday in
    # the participant's zone (the UTC date is a day ahead of it when the suite runs
    # between 00:00 and about 03:00 UTC, and that evening would then lie in the future)
    yesterday = dt.datetime.now(ZoneInfo(tz)) - dt.timedelta(days=1)
    now_ns = time.time_ns()
    seed = an.substance(
        "kratom",
        dose="3",
        unit="g",
        form="powder",
        at=f"{yesterday:%Y-%m-%d} 21:30",
        now_ns=now_ns,
        tz=tz,
    )
    book.append([seed])
    state = WebState(book=book, pin=pin, tz=tz, participant="P07")
    server = Server(state)
    yield server, db
    server.stop()


def page_for(browser: Browser, url: str) -> Page:
    ctx = browser.new_context(
        viewport=PHONE, device_scale_factor=2, locale="en-GB", color_scheme="dark"
    )
    page = ctx.new_page()
    page.goto(url + "/")
    return page


def login(page: Page, pin: str = PIN) -> None:
    page.get_by_label("PIN").fill(pin)
    page.get_by_role("button", name="Open").click()


def stored(db: Path, tz: str) -> list[an.Annotation]:
    book = open_book(db)
    try:
        return an.current(book.history())
    finally:
        book.close()


def test_participant_flow(browser: Browser, site: tuple[Server, Path], screenshots: Path) -> None:
    server, db = site
    tz = server.state.tz
    page = page_for(browser, server.url)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    expect(page).to_have_url(server.url + "/login")
    page.screenshot(path=str(screenshots / "web-login.png"))
    login(page)
    expect(page.get_by_role("heading", name="Pain right now")).to_be_visible()
    page.screenshot(path=str(screenshots / "web-home.png"), full_page=True)

    # One-tap pain: choose the context, tap 6.
    page.get_by_role("radio", name="bedtime").check()
    page.get_by_role("button", name="Pain 6 of 10", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Pain 6/10, bedtime")
    # A second tap within seconds is the same entry, not a new one.
    n_before = len(stored(db, tz))
    page.get_by_role("radio", name="bedtime").check()
    page.get_by_role("button", name="Pain 6 of 10", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Pain 6/10, bedtime")
    assert len(stored(db, tz)) == n_before

    # One-tap substance: yesterday's kratom dose again.
    page.get_by_role("button", name="Took kratom · 3 g · powder now").click()
    expect(page.get_by_role("status")).to_contain_text("kratom 3 g powder")
    expect(page.get_by_role("button", name="Took kratom · 3 g · powder now")).to_contain_text(
        "last "
    )
    page.screenshot(path=str(screenshots / "web-saved.png"))

    # Awake in the night with pain 7.
    page.get_by_role("button", name="Awake, pain 7 of 10").click()
    expect(page.get_by_role("status")).to_contain_text("Pain 7/10, night waking")

    # Morning diary.
    page.get_by_role("link", name="Open the diary for last night").click()
    page.get_by_label("What time did you get into bed?").fill("22:45")
    page.get_by_label("What time did you try to go to sleep?").fill("23:05")
    page.get_by_label("How long did it take you to fall asleep? (minutes)").fill("20")
    page.get_by_label("How many times did you wake up").fill("2")
    page.get_by_label("In total, how long did these awakenings last? (minutes)").fill("35")
    page.get_by_label("What time was your final awakening?").fill("06:40")
    page.get_by_label("What time did you get out of bed for the day?").fill("07:05")
    page.get_by_label("2 poor").check()
    page.get_by_label("3 somewhat rested").check()
    page.get_by_label("Comments (optional)").fill('feet "burning"\nwoke at 3')
    page.screenshot(path=str(screenshots / "web-diary.png"), full_page=True)
    page.get_by_label("Comments (optional)").fill('feet "burning" 🔥\nwoke at 3')
    page.get_by_role("button", name="Save diary").click()
    expect(page.get_by_role("status")).to_contain_text("Diary for the night of")
    expect(page.get_by_text("Done for last night ✓")).to_be_visible()

    records = stored(db, tz)
    kinds = [a.kind for a in records]
    assert sorted(kinds) == ["diary", "event", "pain", "pain", "substance", "substance"]
    pains = sorted((a.payload for a in records if a.kind == "pain"), key=lambda p: p.rating_nrs)  # type: ignore[union-attr]
    assert pains == [an.Pain(6, "bedtime"), an.Pain(7, "night_waking")]
    doses = [a.payload for a in records if a.kind == "substance"]
    assert all(
        (p.name, p.dose, p.unit, p.form) == ("kratom", 3.0, "g", "powder")  # type: ignore[union-attr]
        for p in doses
    )
    assert all(a.source == "web" for a in records if a.recorded_ns > records[0].recorded_ns)
    diary = next(a for a in records if a.kind == "diary")
    d = diary.payload
    assert isinstance(d, an.Diary)
    local = lambda t: dt.datetime.fromtimestamp(t / 1e9, tz=an.zone(tz)).strftime("%H:%M")  # noqa: E731
    assert [
        local(t) for t in (d.in_bed_ns, d.tried_sleep_ns, d.final_wake_ns, d.out_of_bed_ns)
    ] == [
        "22:45",
        "23:05",
        "06:40",
        "07:05",
    ]
    assert (d.sol_min, d.awakenings_n, d.waso_min, d.quality_1_5, d.rested_1_5) == (20, 2, 35, 2, 3)
    assert d.comments == 'feet "burning" 🔥\nwoke at 3'
    assert diary.night == an.latest_complete_night(time.time_ns(), tz)
    events = [a.payload for a in records if a.kind == "event"]
    assert events == [an.Event("I'm awake")]

    # Everything the page needed came from the Pi itself (it works offline).
    assert requested and all(u.startswith(server.url + "/") for u in requested), requested

    # Undo removes the last entry (a deletion record; the original stays in the history).
    page.goto(server.url + "/")
    page.get_by_role("button", name="Pain 2 of 10", exact=True).click()
    page.get_by_role("status").get_by_role("button", name="Undo").click()
    expect(page.get_by_role("status")).to_contain_text("Removed")
    assert len(stored(db, tz)) == len(records)
    page.context.close()


def test_bad_input_on_the_page_names_the_field_and_stores_nothing(
    browser: Browser, site: tuple[Server, Path], screenshots: Path
) -> None:
    server, db = site
    before = open_book(db).history()
    page = page_for(browser, server.url)
    login(page)
    page.get_by_text("Something else").click()
    page.get_by_label("Substance").fill("kratom")
    page.get_by_label("Dose").fill("-2")
    page.get_by_label("Unit").select_option("g")
    page.get_by_role("button", name="Save substance").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Not saved (substance)")
    expect(alert).to_contain_text("dose")
    expect(alert).to_contain_text("greater than 0")
    expect(page.get_by_label("Substance")).to_have_value("kratom")  # what was typed survives
    expect(page.get_by_label("Dose")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(screenshots / "web-error.png"))

    page.goto(server.url + "/diary")
    page.get_by_label("What time did you get into bed?").fill("23:30")
    page.get_by_label("What time did you try to go to sleep?").fill("23:00")
    page.get_by_label("How long did it take you to fall asleep? (minutes)").fill("10")
    page.get_by_label("What time was your final awakening?").fill("06:00")
    page.get_by_label("What time did you get out of bed for the day?").fill("06:30")
    page.get_by_label("3 fair").check()
    page.get_by_label("4 well-rested").check()
    page.get_by_role("button", name="Save diary").click()
    expect(page.get_by_role("alert")).to_contain_text("tried_sleep")
    expect(page.get_by_role("alert")).to_contain_text("before time into bed")
    expect(page.get_by_label("What time did you get into bed?")).to_have_value("23:30")
    expect(page.get_by_label("What time did you try to go to sleep?")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert open_book(db).history() == before
    page.context.close()


def test_wrong_pin_is_rate_limited(browser: Browser, site: tuple[Server, Path],
                                   screenshots: Path) -> None:
    server, _ = site
    limiter: LoginLimiter = server.state.limiter
    page = page_for(browser, server.url)
    for _ in range(limiter.max_failures - 1):
        login(page, "000000")
        expect(page.get_by_role("alert")).to_have_text("Wrong PIN.")
    login(page, "000000")
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong PINs")
    # Locked: even the right PIN is refused now.
    login(page)
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong PINs. Try again in")
    expect(page).to_have_url(server.url + "/login")
    page.screenshot(path=str(screenshots / "web-locked.png"))
    page.context.close()


def test_post_without_csrf_token_is_refused(browser: Browser, site: tuple[Server, Path]) -> None:
    server, db = site
    before = open_book(db).history()
    page = page_for(browser, server.url)
    login(page)
    expect(page.get_by_role("heading", name="Pain right now")).to_be_visible()
    # The browser's own cookies (a valid session), but no or a wrong token.
    for form in ({"rating": "5", "context": "bedtime"}, {"rating": "5", "csrf": "forged"}):
        resp = page.request.post(server.url + "/pain", form=form, max_redirects=0)
        assert resp.status == 403
        assert "CSRF" in resp.text()
    # A cross-site origin is refused even with the token copied from the page.
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    resp = page.request.post(
        server.url + "/pain",
        form={"rating": "5", "csrf": token or ""},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert resp.status == 403
    assert open_book(db).history() == before
    page.context.close()


def test_security_headers_and_no_serving_without_pin(
    site: tuple[Server, Path], tmp_path: Path
) -> None:
    server, _ = site
    with urllib.request.urlopen(server.url + "/login") as resp:
        for key, value in SECURITY_HEADERS.items():
            assert resp.headers[key] == value
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        body = resp.read().decode()
    assert "http://" not in body and "https://" not in body  # nothing from the internet
    state = WebState(
        book=server.state.book, pin=PinFile(tmp_path / "none.json"), tz="UTC", participant="x"
    )
    with pytest.raises(ConfigError, match="set-pin"):
        asyncio.run_coroutine_threadsafe(start(state, "127.0.0.1", 0), server.loop).result(10)
    server.state.pin.path.rename(tmp_path / "moved.json")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "/login")
        assert e.value.code == 503
    finally:
        (tmp_path / "moved.json").rename(server.state.pin.path)


WEB_BAD = [
    ("/pain", {"rating": "11", "context": "bedtime"}, "rating"),
    ("/pain", {"rating": "4.5", "context": "bedtime"}, "rating"),
    ("/pain", {"rating": "4", "context": "lunch"}, "context"),
    ("/awake", {"rating": "-2"}, "rating"),
    ("/substance", {"name": ""}, "name"),
    ("/substance", {"name": "kratom", "dose": "-1", "unit": "g"}, "dose"),
    ("/substance", {"name": "kratom", "dose": "500", "unit": "g"}, "dose"),
    ("/substance", {"name": "kratom", "dose": "2", "unit": "sacks"}, "unit"),
    ("/substance", {"name": "kratom", "form": "gas"}, "form"),
    ("/substance", {"name": "kratom", "route": "ear"}, "route"),
    ("/substance", {"name": "kratom", "at": "29:00"}, "at"),
    ("/substance", {"name": "kratom", "note": "x" * 2001}, "note"),
    ("/event", {"text": "  "}, "text"),
    ("/event", {"text": "ok", "at": "2099-01-01T03:00"}, "at"),
    ("/undo", {"id": "nothing"}, "id"),
]
DIARY_OK = {
    "in_bed": "22:50", "tried_sleep": "23:10", "sol_min": "20", "awakenings": "1",
    "waso_min": "10", "final_wake": "06:20", "out_of_bed": "06:40", "quality": "3", "rested": "3",
}  # fmt: skip
WEB_BAD += [
    ("/diary", DIARY_OK | {"in_bed": ""}, "in_bed"),
    ("/diary", DIARY_OK | {"tried_sleep": "22:00"}, "tried_sleep"),
    ("/diary", DIARY_OK | {"sol_min": "-3"}, "sol_min"),
    ("/diary", DIARY_OK | {"awakenings": "100"}, "awakenings"),
    ("/diary", DIARY_OK | {"waso_min": "600"}, "waso_min"),
    ("/diary", DIARY_OK | {"final_wake": "06:50"}, "out_of_bed"),
    ("/diary", DIARY_OK | {"quality": "0"}, "quality"),
    ("/diary", DIARY_OK | {"rested": "six"}, "rested"),
    ("/diary", DIARY_OK | {"night": "2099-12-31"}, "night"),
    ("/diary", DIARY_OK | {"comments": "bad\x07bell"}, "comments"),
]


def test_every_field_refused_by_the_server_names_it(
    browser: Browser, site: tuple[Server, Path]
) -> None:
    """Forged form posts (valid session and token) with bad values: 400, field named."""
    server, db = site
    before = open_book(db).history()
    page = page_for(browser, server.url)
    login(page)
    token = page.locator('input[name="csrf"]').first.get_attribute("value") or ""
    for path, form, field in WEB_BAD:
        resp = page.request.post(server.url + path, form=form | {"csrf": token}, max_redirects=0)
        assert resp.status == 400, (path, form, resp.status)
        body = resp.text()
        assert f'<span class="field">{field}</span>' in body, (path, form)
        assert 'role="alert"' in body
    assert open_book(db).history() == before
    page.context.close()
