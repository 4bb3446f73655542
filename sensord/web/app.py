"""The participant's annotation page (aiohttp): pain, substances, "awake now", diary.

Server-rendered HTML forms that post and redirect; no JavaScript, no external fonts or
CDNs, so the page works from a Pi that has no internet connection, and the content
security policy can forbid scripts altogether. Every annotation is validated by
:mod:`sensord.annotate` (the same code the CLI uses); a rejected form comes back with
the message naming the field and nothing is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import importlib.resources
import ipaddress
import logging
import secrets
import time
import zoneinfo
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

from aiohttp import web

from sensord import annotate as an
from sensord.config import Config
from sensord.errors import AnnotationError, ConfigError
from sensord.web.auth import (
    LoginLimiter,
    PinFile,
    Session,
    SessionStore,
    csrf_ok,
    verify_pin,
)

log = logging.getLogger("sensord.web")

SESSION_COOKIE = "sensord_session"
LOGIN_COOKIE = "sensord_login"
MAX_BODY_BYTES = 64 * 1024
SHUTDOWN_S = 5.0
"""On stop, requests in progress get this long to finish (the daemon's SIGTERM waits)."""

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}


class Book(Protocol):
    """Where annotations live: the full append-only history, and appending to it."""

    def history(self) -> list[an.Annotation]: ...

    def append(self, records: Sequence[an.Annotation]) -> None: ...


@dataclass
class WebState:
    """Everything the handlers share."""

    book: Book
    pin: PinFile
    tz: str
    participant: str
    sessions: SessionStore = field(default_factory=SessionStore)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    now_ns: Callable[[], int] = time.time_ns
    mono_s: Callable[[], float] = time.monotonic


STATE: web.AppKey[WebState] = web.AppKey("state", WebState)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)
FORM: web.RequestKey[dict[str, str]] = web.RequestKey("form", dict)
h = html.escape


# --------------------------------------------------------------------------- middleware
@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    def add(headers: MutableMapping[str, str]) -> None:
        for k, v in SECURITY_HEADERS.items():
            headers.setdefault(k, v)

    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        add(exc.headers)
        raise
    except Exception:  # aiohttp's own 500 page would go out without the headers
        log.exception("web: %s %s failed", request.method, request.path)
        resp = web.Response(status=500, text="Something went wrong; nothing was saved.\n")
    add(resp.headers)
    return resp


PUBLIC = {"/login", "/static/app.css", "/favicon.svg"}


@web.middleware
async def require_session(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = request.app[STATE]
    if not state.pin.exists():
        return web.Response(
            status=503, text="No PIN is set. Run `sensord web set-pin` on the Pi.\n"
        )
    if request.path in PUBLIC:
        return await handler(request)
    session = state.sessions.get(request.cookies.get(SESSION_COOKIE), state.mono_s())
    if session is None:  # whatever the path (even one that does not exist): the login page
        if request.method in ("GET", "HEAD"):
            raise web.HTTPSeeOther("/login")
        return _login_form(request, "Please enter your PIN.", status=401)
    request[SESSION] = session
    if request.method == "POST":
        if not _same_origin(request):
            return web.Response(status=403, text="Cross-origin request refused.\n")
        form = await request.post()
        if not csrf_ok(session, form.get("csrf")):
            return web.Response(
                status=403, text="Form expired or CSRF token missing. Reload the page.\n"
            )
        request[FORM] = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.scheme}://{request.host}"


# --------------------------------------------------------------------------- rendering
def _static_text(name: str) -> str:
    return (importlib.resources.files("sensord.web") / "static" / name).read_text("utf-8")


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>{h(title)} - sensord</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body>
{body}
</body>
</html>
"""
    return web.Response(text=doc, content_type="text/html", status=status)


def _csrf(request: web.Request) -> str:
    return f'<input type="hidden" name="csrf" value="{h(request[SESSION].csrf)}">'


def _local(t_ns: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=zoneinfo.ZoneInfo(tz))


def _default_context(now: dt.datetime) -> str:
    if 6 <= now.hour < 12:
        return "morning"
    if now.hour >= 17 or now.hour < 1:
        return "bedtime"
    if now.hour < 6:
        return "night_waking"
    return "other"


PAIN_WORDS = {0: "no pain", 5: "moderate", 10: "worst imaginable"}


def _pain_buttons(name: str, aria_prefix: str) -> str:
    out = []
    for n in range(11):
        word = PAIN_WORDS.get(n, "")
        label = f"{aria_prefix} {n} of 10" + (f", {word}" if word else "")
        out.append(
            f'<button class="nrs nrs-{n}" type="submit" name="{name}" value="{n}" '
            f'aria-label="{h(label)}">{n}</button>'
        )
    return '<div class="nrs-grid">' + "".join(out) + "</div>"


def _header(state: WebState, request: web.Request, now: dt.datetime) -> str:
    return f"""<header class="top">
<div><h1>Sleep notes</h1><p class="sub">{h(state.participant)} · {now:%a %d %b, %H:%M}</p></div>
<form method="post" action="/logout">{_csrf(request)}
<button class="link" type="submit">Log out</button></form>
</header>"""


def _flash(state: WebState, request: web.Request, history: list[an.Annotation]) -> str:
    saved = request.query.get("saved", "")
    undone = request.query.get("undone", "")
    by_id = {a.id: a for a in history}
    if saved:
        items = [by_id[i] for i in saved.split(",") if i in by_id]
        if items:
            lines = "".join(f"<li>{h(_summary(a))}</li>" for a in items)
            undo = "".join(
                f'<form method="post" action="/undo">{_csrf(request)}'
                f'<input type="hidden" name="id" value="{h(a.id)}">'
                f'<button class="secondary" type="submit">Undo</button></form>'
                for a in items[-1:]
            )
            return (
                f'<div class="flash ok" role="status"><p><strong>Saved.</strong></p>'
                f"<ul>{lines}</ul>{undo}</div>"
            )
    if undone and undone in by_id:
        return (
            f'<div class="flash ok" role="status"><p><strong>Removed:</strong> '
            f"{h(_summary(by_id[undone]))}</p></div>"
        )
    return '<div class="flash-slot" role="status"></div>'


def _error_box(err: AnnotationError | None, what: str) -> str:
    if err is None:
        return ""
    return (
        f'<div class="flash err" role="alert" id="error"><p>'
        f"<strong>Not saved ({h(what)}).</strong> "
        f'<span class="field">{h(err.field)}</span>: {h(str(err).split(": ", 1)[-1])}</p></div>'
    )


def _summary(a: an.Annotation) -> str:
    """Short local description for the page."""
    return f"{_local(a.t_ns, a.tz):%a %H:%M} · {an.summary(a)}"


def _substance_label(p: an.Substance) -> str:
    dose = f"{p.dose:g} {p.unit}" if p.dose is not None else ""
    return " · ".join(x for x in (p.name_entered, dose, p.form) if x)


# --------------------------------------------------------------------------- pages
async def static_css(request: web.Request) -> web.Response:
    return web.Response(
        text=_static_text("app.css"),
        content_type="text/css",
        headers={"Cache-Control": "max-age=3600"},
    )


async def favicon(request: web.Request) -> web.Response:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
        '<circle cx="8" cy="8" r="7" fill="#7aa2f7"/></svg>'
    )
    return web.Response(text=svg, content_type="image/svg+xml")


async def login_page(request: web.Request) -> web.Response:
    return _login_form(request, "")


def _login_form(request: web.Request, message: str, *, status: int = 200) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or _new_token()
    msg = f'<p class="flash err" role="alert">{h(message)}</p>' if message else ""
    body = f"""<main class="narrow">
<h1>Sleep notes</h1>
<form method="post" action="/login" class="card">
<input type="hidden" name="login_token" value="{h(token)}">
<label for="pin">PIN</label>
<input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password"
 required minlength="6" maxlength="64" autofocus>
{msg}
<button class="primary wide" type="submit">Open</button>
</form>
</main>"""
    resp = _page("Log in", body, status=status)
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", max_age=3600)
    return resp


def _new_token() -> str:
    return secrets.token_urlsafe(24)


def _client(request: web.Request) -> str:
    peer = request.remote or "?"
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if ip.version == 6:  # one household often owns a whole /64
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


async def login_submit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    client = _client(request)
    wait = state.limiter.retry_after_s(client, state.mono_s())
    if wait > 0:
        resp = _login_form(
            request,
            f"Too many wrong PINs. Try again in {int(wait) + 1} seconds.",
            status=429,
        )
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    form = await request.post()
    token = request.cookies.get(LOGIN_COOKIE)
    sent = form.get("login_token")
    if not token or not isinstance(sent, str) or sent != token or not _same_origin(request):
        return _login_form(request, "The login form expired; please enter your PIN again.",
                           status=403)
    pin = form.get("pin")
    record = state.pin.load()
    loop = asyncio.get_running_loop()
    ok = isinstance(pin, str) and await loop.run_in_executor(None, verify_pin, pin, record)
    if not ok:
        state.limiter.failure(client, state.mono_s())
        wait = state.limiter.retry_after_s(client, state.mono_s())
        msg = "Wrong PIN."
        if wait > 0:
            msg += f" Too many wrong PINs. Try again in {int(wait) + 1} seconds."
        return _login_form(request, msg, status=429 if wait > 0 else 401)
    state.limiter.success(client)
    session = state.sessions.create(state.mono_s())
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(
        SESSION_COOKIE,
        session.token,
        httponly=True,
        samesite="Strict",
        max_age=int(state.sessions.max_age_s),
    )
    resp.del_cookie(LOGIN_COOKIE)
    raise resp


async def logout(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.sessions.drop(request.cookies.get(SESSION_COOKIE))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(SESSION_COOKIE)
    raise resp


async def home(request: web.Request) -> web.Response:
    return _home(request)


def _home(
    request: web.Request,
    *,
    error: AnnotationError | None = None,
    error_in: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    state = request.app[STATE]
    now_ns = state.now_ns()
    now = _local(now_ns, state.tz)
    history = state.book.history()
    live = an.current(history)
    ctx_default = (values or {}).get("context") or _default_context(now)
    csrf = _csrf(request)
    vals = values or {}

    def err(section: str, what: str) -> str:
        return _error_box(error, what) if error_in == section else ""

    def inv(name: str) -> str:
        bad = error is not None and error.field == name
        return ' aria-invalid="true" aria-describedby="error"' if bad else ""

    radios = "".join(
        f'<label class="chip"><input type="radio" name="context" value="{c}"'
        f"{' checked' if c == ctx_default else ''}> {an.CONTEXT_LABELS[c]}</label>"
        for c in an.PAIN_CONTEXTS
    )
    pain = f"""<section aria-labelledby="pain-h" class="card">
<h2 id="pain-h">Pain right now</h2>
{err("pain", "pain")}
<form method="post" action="/pain">{csrf}
<fieldset class="chips"><legend>When</legend>{radios}</fieldset>
<p class="hint" id="nrs-hint">0 = no pain, 10 = worst pain imaginable. One tap saves.</p>
{_pain_buttons("rating", "Pain")}
</form>
</section>"""

    awake = f"""<section aria-labelledby="awake-h" class="card">
<h2 id="awake-h">I'm awake now</h2>
{err("awake", "awake")}
<form method="post" action="/awake">{csrf}
<p class="hint">Tap your pain now, or just note that you are awake.</p>
{_pain_buttons("rating", "Awake, pain")}
<button class="wide secondary" type="submit" name="rating" value="">Awake, no rating</button>
</form>
</section>"""

    recent = an.last_doses(history)
    taps = []
    for i, rec in enumerate(recent):
        p = rec.payload
        assert isinstance(p, an.Substance)
        fields = {
            "name": p.name_entered,
            "dose": "" if p.dose is None else f"{p.dose:g}",
            "unit": p.unit or "",
            "form": p.form,
            "route": p.route,
        }
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{h(v)}">' for k, v in fields.items()
        )
        last = _local(rec.t_ns, rec.tz).strftime("last %a %H:%M")
        taps.append(
            f'<form method="post" action="/substance">{csrf}{hidden}'
            f'<button class="tap" type="submit" id="tap-{i}" '
            f'aria-label="Took {h(_substance_label(p))} now">'
            f'<span class="tap-main">{h(_substance_label(p))}</span>'
            f'<span class="tap-sub">{h(last)}</span></button></form>'
        )
    tap_html = (
        '<div class="taps">' + "".join(taps) + "</div>"
        if taps
        else '<p class="hint">Substances you record appear here for one-tap entry.</p>'
    )
    options = "".join(f'<option value="{h(s.name)}">' for s in an.SUBSTANCES)
    unit_opts = "".join(
        f'<option value="{u}"{" selected" if vals.get("unit") == u else ""}>{u}</option>'
        for u in an.UNITS
    )
    form_opts = '<option value="">-</option>' + "".join(
        f'<option value="{f}"{" selected" if vals.get("form") == f else ""}>{f}</option>'
        for f in an.FORMS
    )
    route_opts = '<option value="">-</option>' + "".join(
        f'<option value="{r}"{" selected" if vals.get("route") == r else ""}>{r}</option>'
        for r in an.ROUTES
    )
    open_other = " open" if error_in == "substance" else ""
    substance = f"""<section aria-labelledby="subst-h" class="card">
<h2 id="subst-h">Took something</h2>
{err("substance", "substance")}
{tap_html}
<details{open_other}><summary>Something else</summary>
<form method="post" action="/substance" class="grid">{csrf}
<label for="s-name">Substance</label>
<input id="s-name" name="name" list="substances" required maxlength="80" autocomplete="off"
 value="{h(vals.get("name", ""))}"{inv("name")}>
<datalist id="substances">{options}</datalist>
<div class="row">
<div><label for="s-dose">Dose</label>
<input id="s-dose" name="dose" inputmode="decimal" value="{h(vals.get("dose", ""))}"{inv("dose")}>
</div>
<div><label for="s-unit">Unit</label>
<select id="s-unit" name="unit"{inv("unit")}>{unit_opts}</select></div>
</div>
<div class="row">
<div><label for="s-form">Form</label>
<select id="s-form" name="form"{inv("form")}>{form_opts}</select></div>
<div><label for="s-route">Route</label>
<select id="s-route" name="route"{inv("route")}>{route_opts}</select></div>
</div>
<label for="s-at">Time taken (empty = now)</label>
<input id="s-at" name="at" type="time" value="{h(vals.get("at", ""))}"{inv("at")}>
<label for="s-note">Note</label>
<textarea id="s-note" name="note" rows="2" maxlength="2000">{h(vals.get("note", ""))}</textarea>
<button class="primary" type="submit">Save substance</button>
</form></details>
</section>"""

    last_night = an.latest_complete_night(now_ns, state.tz)
    has_diary = any(a.kind == "diary" and a.night == last_night for a in live)
    diary_state = (
        '<p class="done">Done for last night ✓</p>'
        if has_diary
        else '<p class="hint">A minute after you get up: how did you sleep?</p>'
    )
    diary = f"""<section aria-labelledby="diary-h" class="card">
<h2 id="diary-h">Morning diary</h2>
{diary_state}
<a class="button primary" href="/diary">Open the diary for last night</a>
</section>"""

    note = f"""<section aria-labelledby="note-h" class="card">
<h2 id="note-h">Something happened</h2>
{err("event", "note")}
<form method="post" action="/event" class="grid">{csrf}
<label for="e-text">What happened</label>
<textarea id="e-text" name="text" rows="2" maxlength="2000" required>
{h(vals.get("text", ""))}</textarea>
<label for="e-at">When (empty = now)</label>
<input id="e-at" name="at" type="time" value="{h(vals.get("at_event", ""))}">
<button class="primary" type="submit">Save note</button>
</form>
</section>"""

    latest = sorted(live, key=lambda a: a.recorded_ns, reverse=True)[:8]
    rows = "".join(
        f'<li><span>{h(_summary(a))}</span><form method="post" action="/undo">{csrf}'
        f'<input type="hidden" name="id" value="{h(a.id)}">'
        f'<button class="link" type="submit" aria-label="Remove: {h(_summary(a))}">Remove</button>'
        f"</form></li>"
        for a in latest
    )
    recent_list = f"""<section aria-labelledby="recent-h" class="card">
<h2 id="recent-h">Recent notes</h2>
<ul class="recent">{rows or "<li>Nothing yet.</li>"}</ul>
</section>"""

    body = (
        _header(state, request, now)
        + "<main>"
        + _flash(state, request, history)
        + pain
        + substance
        + awake
        + diary
        + note
        + recent_list
        + "</main>"
    )
    return _page("Sleep notes", body, status=status)


# --------------------------------------------------------------------------- actions
def _form(request: web.Request) -> dict[str, str]:
    form: dict[str, str] = request[FORM]
    return dict(form)


def _append(state: WebState, records: Sequence[an.Annotation]) -> list[an.Annotation]:
    """Append new records, but treat a double tap / re-sent form as the first entry."""
    history = state.book.history()
    out: list[an.Annotation] = []
    fresh: list[an.Annotation] = []
    for rec in records:
        same = an.repeated_entry(history, rec) if rec.action == "create" else None
        out.append(same or rec)
        if same is None:
            fresh.append(rec)
    if fresh:
        state.book.append(fresh)
    return out


def _saved(records: Sequence[an.Annotation]) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/?" + urlencode({"saved": ",".join(a.id for a in records)}))


def _save(
    request: web.Request,
    build: Callable[[WebState], Sequence[an.Annotation]],
    rejected: Callable[[AnnotationError], web.Response],
) -> web.Response:
    """Save what ``build`` makes and redirect home; on an :class:`AnnotationError`, nothing
    is stored and ``rejected`` renders the form again with the error."""
    state = request.app[STATE]
    try:
        records = build(state)
    except AnnotationError as exc:
        return rejected(exc)
    raise _saved(_append(state, records))


def _home_rejected(
    request: web.Request, error_in: str, values: dict[str, str]
) -> Callable[[AnnotationError], web.Response]:
    return lambda exc: _home(request, error=exc, error_in=error_in, values=values, status=400)


async def post_pain(request: web.Request) -> web.Response:
    f = _form(request)

    def build(state: WebState) -> list[an.Annotation]:
        return [an.pain(
            f.get("rating"),
            f.get("context") or "other",
            now_ns=state.now_ns(),
            tz=state.tz,
            source="web",
        )]

    return _save(request, build, _home_rejected(request, "pain", f))


async def post_awake(request: web.Request) -> web.Response:
    f = _form(request)

    def build(state: WebState) -> list[an.Annotation]:
        now_ns = state.now_ns()
        records = [an.event("I'm awake", now_ns=now_ns, tz=state.tz, source="web")]
        if f.get("rating", "").strip():
            records.append(
                an.pain(f["rating"], "night_waking", now_ns=now_ns, tz=state.tz, source="web")
            )
        return records

    return _save(request, build, _home_rejected(request, "awake", f))


async def post_substance(request: web.Request) -> web.Response:
    f = _form(request)

    def build(state: WebState) -> list[an.Annotation]:
        return [an.substance(
            f.get("name"),
            dose=f.get("dose"),
            unit=f.get("unit") if f.get("dose", "").strip() else None,
            form=f.get("form"),
            route=f.get("route"),
            at=f.get("at"),
            note=f.get("note"),
            now_ns=state.now_ns(),
            tz=state.tz,
            source="web",
        )]

    return _save(request, build, _home_rejected(request, "substance", f))


async def post_event(request: web.Request) -> web.Response:
    f = _form(request)

    def build(state: WebState) -> list[an.Annotation]:
        return [an.event(
            f.get("text"), at=f.get("at"), now_ns=state.now_ns(), tz=state.tz, source="web"
        )]

    vals = dict(f)
    vals["at_event"] = vals.pop("at", "")  # the event form's own time field
    return _save(request, build, _home_rejected(request, "event", vals))


async def post_undo(request: web.Request) -> web.Response:
    state = request.app[STATE]
    f = _form(request)
    history = state.book.history()
    try:
        target = an.find(history, f.get("id", ""))
        rec = an.delete(history, target, now_ns=state.now_ns(), source="web")
    except AnnotationError as exc:
        return _home(request, error=exc, error_in="pain", status=400)
    state.book.append([rec])
    raise web.HTTPSeeOther("/?" + urlencode({"undone": target.id}))


DIARY_FIELDS = (
    ("in_bed", "What time did you get into bed?", "time"),
    ("tried_sleep", "What time did you try to go to sleep?", "time"),
    ("sol_min", "How long did it take you to fall asleep? (minutes)", "minutes"),
    ("awakenings", "How many times did you wake up, not counting your final awakening?", "count"),
    ("waso_min", "In total, how long did these awakenings last? (minutes)", "minutes"),
    ("final_wake", "What time was your final awakening?", "time"),
    ("out_of_bed", "What time did you get out of bed for the day?", "time"),
)
QUALITY = ("very poor", "poor", "fair", "good", "very good")
RESTED = (
    "not at all rested",
    "slightly rested",
    "somewhat rested",
    "well-rested",
    "very well-rested",
)


def _diary_page(
    request: web.Request,
    values: dict[str, str],
    error: AnnotationError | None = None,
    *,
    status: int = 200,
) -> web.Response:
    state = request.app[STATE]
    now_ns = state.now_ns()
    night = values.get("night") or an.latest_complete_night(now_ns, state.tz)
    bad = error.field if error else ""
    parts = []
    for name, question, kind in DIARY_FIELDS:
        attrs = ' aria-invalid="true" aria-describedby="error"' if bad == name else ""
        value = h(values.get(name, ""))
        if kind == "time":
            inp = f'type="time" required value="{value}"'
        else:
            hi = 1440 if kind == "minutes" else 60
            inp = f'type="number" inputmode="numeric" min="0" max="{hi}" value="{value}"'
        parts.append(
            f'<div class="q"><label for="d-{name}">{h(question)}</label>'
            f'<input id="d-{name}" name="{name}" {inp}{attrs}></div>'
        )

    def scale(name: str, question: str, labels: Sequence[str]) -> str:
        inv = ' aria-invalid="true" aria-describedby="error"' if bad == name else ""
        opts = "".join(
            f'<label class="chip"><input type="radio" name="{name}" value="{i}" required'
            f"{' checked' if values.get(name) == str(i) else ''}{inv}> {i} {h(lab)}</label>"
            for i, lab in enumerate(labels, start=1)
        )
        return f'<fieldset class="chips scale"><legend>{h(question)}</legend>{opts}</fieldset>'

    body = f"""<header class="top"><div><h1>Morning diary</h1>
<p class="sub">Night of {h(night)} · Consensus Sleep Diary</p></div>
<a class="link" href="/">Back</a></header>
<main>
{_error_box(error, "diary")}
<form method="post" action="/diary" class="card grid">{_csrf(request)}
<input type="hidden" name="night" value="{h(night)}">
{"".join(parts)}
{scale("quality", "How would you rate the quality of your sleep?", QUALITY)}
{scale("rested", "How rested or refreshed did you feel when you woke up for the day?", RESTED)}
<div class="q"><label for="d-comments">Comments (optional)</label>
<textarea id="d-comments" name="comments" rows="3" maxlength="2000">
{h(values.get("comments", ""))}</textarea></div>
<button class="primary" type="submit">Save diary</button>
</form>
<p class="cite">Items from the Consensus Sleep Diary core
(Carney et al., SLEEP 2012;35(2):287-302).</p>
</main>"""
    return _page("Morning diary", body, status=status)


async def diary_page(request: web.Request) -> web.Response:
    return _diary_page(request, {})


async def post_diary(request: web.Request) -> web.Response:
    f = _form(request)

    def build(state: WebState) -> list[an.Annotation]:
        return [an.diary(
            now_ns=state.now_ns(),
            tz=state.tz,
            night=f.get("night") or None,
            in_bed=f.get("in_bed"),
            tried_sleep=f.get("tried_sleep"),
            sol_min=f.get("sol_min"),
            awakenings=f.get("awakenings"),
            waso_min=f.get("waso_min"),
            final_wake=f.get("final_wake"),
            out_of_bed=f.get("out_of_bed"),
            quality=f.get("quality"),
            rested=f.get("rested"),
            comments=f.get("comments"),
            source="web",
        )]

    return _save(request, build, lambda exc: _diary_page(request, f, exc, status=400))


# --------------------------------------------------------------------------- app
def make_app(state: WebState) -> web.Application:
    """The aiohttp application. Serve it only after a PIN exists (see :func:`serve`)."""
    app = web.Application(
        middlewares=[security_headers, require_session], client_max_size=MAX_BODY_BYTES
    )
    app[STATE] = state
    app.router.add_get("/static/app.css", static_css)
    app.router.add_get("/favicon.svg", favicon)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", home)
    app.router.add_post("/pain", post_pain)
    app.router.add_post("/awake", post_awake)
    app.router.add_post("/substance", post_substance)
    app.router.add_post("/event", post_event)
    app.router.add_post("/undo", post_undo)
    app.router.add_get("/diary", diary_page)
    app.router.add_post("/diary", post_diary)
    return app


async def start(state: WebState, host: str, port: int) -> web.AppRunner:
    """Start serving on ``host:port`` (refuses without a PIN); returns the runner to stop."""
    if not state.pin.exists():
        raise ConfigError(
            "refusing to serve the annotation page before a PIN exists; run `sensord web set-pin`",
            source=str(state.pin.path),
        )
    runner = web.AppRunner(make_app(state), access_log=None, shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (useful with port 0)."""
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("runner is not listening")


@dataclass
class WebServer:
    """A running page with its notebook (what the daemon keeps, then stops)."""

    runner: web.AppRunner
    book: Book
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()
        close = getattr(self.book, "close", None)
        if close is not None:
            close()


async def start_from_config(
    cfg: Config, *, host: str | None = None, port: int | None = None
) -> WebServer:
    """Start the page for the configured participant on ``[web] bind``/``port`` (or the
    given ones). Raises :class:`ConfigError` when no PIN is set; nothing is served then."""
    from sensord.notebook import open_book

    an.zone(cfg.timezone)
    pin = PinFile(pin_path(cfg))
    if not pin.exists():
        raise ConfigError(
            "refusing to serve the annotation page before a PIN exists; run "
            "`sensord web set-pin`",
            source=str(pin.path),
        )
    book = open_book(cfg)
    state = WebState(
        book=book,
        pin=pin,
        tz=cfg.timezone,
        participant=cfg.participant_id,
        sessions=SessionStore(
            idle_s=cfg.web.session_idle_h * 3600, max_age_s=cfg.web.session_max_h * 3600
        ),
    )
    bind = host or cfg.web.bind
    try:
        runner = await start(state, bind, cfg.web.port if port is None else port)
    except BaseException:
        book.close()
        raise
    return WebServer(runner, book, f"http://{bind}:{bound_port(runner)}/")


def pin_path(cfg: Config) -> Path:
    """Where the PIN hash lives: ``<data_dir>/web-pin.json``."""
    return cfg.data_path / "web-pin.json"
