"""The annotation page as the daemon runs it: beside the recording, never in its way.

``sensord run`` calls :func:`start_page` once its loop is running and
:meth:`DaemonPage.stop` on the way out (SIGTERM/SIGINT). With ``[web] enabled = false``
(the default) nothing is started and no socket is opened. When enabled, the page is
started with :func:`sensord.web.app.start_from_config`, which keeps every protection of
``sensord web serve``: above all, nothing is served before a PIN exists.

Whatever goes wrong with the page (no PIN yet, the bind address not up yet at boot, the
port taken by another program) is logged once as a warning naming the cause and the fix,
and the daemon keeps recording. The page retries every :data:`RETRY_S` seconds, so a PIN
set with ``sensord web set-pin`` while the daemon runs, or a network that comes up after
it, brings the page up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sensord.config import Config
from sensord.errors import ConfigError
from sensord.web.auth import PinFile

if TYPE_CHECKING:
    from sensord.web.app import WebServer

log = logging.getLogger("sensord.web")

RETRY_S = 10.0
"""Real seconds between attempts to start the page (PIN missing, address or port not usable)."""


class DaemonPage:
    """The page's supervisor task inside the daemon's event loop."""

    def __init__(self, cfg: Config, *, retry_s: float = RETRY_S) -> None:
        self.cfg = cfg
        self.retry_s = retry_s
        self.server: WebServer | None = None
        self._stop = asyncio.Event()
        self._problem = ""
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.server is None:
                    await self._try_start()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry_s)
        finally:
            if self.server is not None:
                server, self.server = self.server, None
                try:
                    await server.stop()
                except Exception as exc:  # the daemon's own shutdown must go on
                    log.warning("annotation page did not stop cleanly: %r", exc)
                else:
                    log.info("annotation page stopped")

    async def _try_start(self) -> None:
        from sensord.web.app import pin_path, start_from_config  # aiohttp: only when enabled

        cfg = self.cfg
        try:
            self.server = await start_from_config(cfg)
        except ConfigError as exc:
            if not PinFile(pin_path(cfg)).exists():
                self._warn(
                    "no-pin",
                    "[web] enabled, but no PIN is set, so the annotation page is not "
                    "served (recording continues). Set one with `sensord web set-pin`; the "
                    f"page starts within {self.retry_s:g} s.",
                )
            else:
                self._warn(f"config:{exc}", f"annotation page not started: {exc} "
                           "(recording continues)")
        except OSError as exc:  # address not (yet) assigned, port in use, no permission
            self._warn(
                f"os:{exc.errno}",
                f"cannot listen on {cfg.web.bind}:{cfg.web.port} ({exc.strerror or exc}); "
                "the annotation page is not served (recording continues). Check [web] bind "
                f"and port; retrying every {self.retry_s:g} s.",
            )
        except Exception as exc:  # the page must never take the recording down
            self._warn(f"bug:{exc!r}", f"annotation page failed to start: {exc!r} "
                       "(recording continues)")
        else:
            self._problem = ""
            log.info("serving the annotation page on %s", self.server.url)

    def _warn(self, key: str, message: str) -> None:
        """Log a problem once, not on every retry."""
        if key != self._problem:
            self._problem = key
            log.warning("%s", message)

    async def stop(self) -> None:
        """Stop serving (open requests get a few seconds) and end the task; never raises,
        so the daemon's shutdown (log, store, transport) always runs after it."""
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def start_page(cfg: Config) -> DaemonPage | None:
    """Start the page beside the daemon when ``[web] enabled``; ``None`` (nothing started,
    nothing listening) otherwise. Never raises for a page problem: those are logged."""
    if not cfg.web.enabled:
        return None
    return DaemonPage(cfg)
