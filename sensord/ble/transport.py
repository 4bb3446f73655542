"""The protocol every BLE transport implements (bleak live, bumble virtual, replay).

A transport turns radio activity into :data:`sensord.model.SessionEvent` values and
hands them to one callback; everything downstream (session log, decoders, staging,
store) is the same whichever transport produced them. Tests and the replay command
use exactly the path the live daemon uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from sensord.model import SessionEvent

EventSink = Callable[[SessionEvent], None]
"""Receives every event in arrival order. Must not block (it is called on the event loop)."""

DisconnectCallback = Callable[[str], Awaitable[None] | None]
"""Called with the device id when a connection drops; may be a coroutine function."""

_TASKS: set[asyncio.Future[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
    """Run ``coro`` in the background, keeping a reference until it finishes."""
    task = asyncio.ensure_future(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


@dataclass(frozen=True, slots=True)
class Advertisement:
    """A device seen while scanning."""

    address: str
    name: str | None
    rssi_dbm: int | None
    service_uuids: tuple[str, ...]


class Connection(Protocol):
    """An open GATT connection to one device."""

    @property
    def is_connected(self) -> bool: ...

    async def start_notify(self, char_uuid: str) -> None:
        """Subscribe; notifications flow to the transport's :data:`EventSink`."""

    async def write(self, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        """Write a characteristic value (e.g. a Polar PMD control-point request)."""

    async def read(self, char_uuid: str) -> bytes:
        """Read a characteristic value (battery level, device information)."""

    async def disconnect(self) -> None: ...


class Transport(Protocol):
    """Something that can find devices and open connections to them."""

    async def scan(
        self, *, timeout_s: float, service_uuids: tuple[str, ...] = ()
    ) -> list[Advertisement]: ...

    async def connect(
        self,
        device: str,
        address: str,
        sink: EventSink,
        *,
        timeout_s: float,
        on_disconnect: DisconnectCallback | None = None,
    ) -> Connection:
        """Connect to ``address``; events are tagged with ``device`` (the configured id)."""
