"""Transport on Google's bumble host stack: virtual air over TCP in tests, USB dongles in the field.

``hci_spec`` is any bumble transport name: ``tcp-client:127.0.0.1:PORT`` for the virtual
air of :mod:`sensord.ble.virtual`, ``usb:0`` for a dongle without BlueZ. One transport owns
one controller and can hold several connections (a chest strap and a wrist device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bumble import hci
from bumble.core import UUID, BaseBumbleError
from bumble.device import Connection, Device, Peer
from bumble.transport import open_transport

from sensord.ble.transport import Advertisement, DisconnectCallback, EventSink, spawn
from sensord.errors import TransportError
from sensord.model import DeviceEvent, RawNotification
from sensord.timesource import Clock, SystemClock

log = logging.getLogger(__name__)


_ERRORS = (BaseBumbleError, hci.HCI_Error, OSError, EOFError, TimeoutError, asyncio.TimeoutError)


def _full_uuid(uuid: UUID) -> str:
    """128-bit lower-case form of a bumble UUID (16/32-bit SIG ones are expanded)."""
    b = bytes(uuid.to_bytes(force_128=True))
    h = b[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BumbleConnection:
    """One GATT connection held by a :class:`BumbleTransport`."""

    def __init__(
        self, device: str, connection: Connection, peer: Peer, sink: EventSink, clock: Clock
    ) -> None:
        self._device = device
        self._connection = connection
        self._peer = peer
        self._sink = sink
        self._clock = clock
        self._connected = True
        self._chars = {
            _full_uuid(c.uuid): c for s in peer.services for c in s.characteristics
        }
        self._services = [_full_uuid(s.uuid) for s in peer.services]

    def _mark_disconnected(self) -> None:
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def service_uuids(self) -> list[str]:
        return list(self._services)

    def characteristic_uuids(self) -> list[str]:
        return list(self._chars)

    def _char(self, char_uuid: str) -> Any:
        try:
            return self._chars[char_uuid.lower()]
        except KeyError:
            raise TransportError(
                f"{self._device}: characteristic {char_uuid} not offered by the device "
                f"(it has {', '.join(sorted(self._chars))})"
            ) from None

    async def start_notify(self, char_uuid: str) -> None:
        char = self._char(char_uuid)
        uuid = char_uuid.lower()
        device, sink, clock = self._device, self._sink, self._clock

        def on_value(value: bytes) -> None:
            sink(RawNotification(device, uuid, *clock.read(), bytes(value)))

        try:
            await self._peer.subscribe(char, on_value)
        except _ERRORS as exc:
            raise TransportError(f"{device}: subscribe to {uuid} failed: {exc}") from exc

    async def write(self, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        try:
            await self._peer.write_value(self._char(char_uuid), data, with_response=response)
        except _ERRORS as exc:
            raise TransportError(
                f"{self._device}: write {data.hex()} to {char_uuid} failed: {exc}"
            ) from exc

    async def read(self, char_uuid: str) -> bytes:
        try:
            return bytes(await self._peer.read_value(self._char(char_uuid)))
        except _ERRORS as exc:
            raise TransportError(f"{self._device}: read {char_uuid} failed: {exc}") from exc

    async def disconnect(self) -> None:
        if not self._connected:
            return
        try:
            await asyncio.wait_for(self._connection.disconnect(), timeout=5.0)
        except _ERRORS as exc:
            log.warning("%s: disconnect failed (%s); dropping the link", self._device, exc)
        self._connected = False


class BumbleTransport:
    """A bumble host on one controller (``hci_spec``)."""

    def __init__(
        self,
        hci_spec: str,
        *,
        clock: Clock | None = None,
        address: str = "C0:5E:00:00:00:01",
    ) -> None:
        self.hci_spec = hci_spec
        self.clock: Clock = clock or SystemClock()
        self.address = address
        self._hci: Any = None
        self._device: Device | None = None
        self._lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()

    async def _ensure(self) -> Device:
        async with self._open_lock:  # several supervisors start at once
            return await self._open()

    async def _open(self) -> Device:
        if self._device is not None:
            return self._device
        try:
            self._hci = await open_transport(self.hci_spec)
            device = Device.with_hci(
                "sensord", hci.Address(self.address), self._hci.source, self._hci.sink
            )
            await asyncio.wait_for(device.power_on(), timeout=10)
        except _ERRORS as exc:
            raise TransportError(f"bumble controller {self.hci_spec}: {exc}") from exc
        self._device = device
        return device

    async def close(self) -> None:
        if self._hci is not None:
            with contextlib.suppress(*_ERRORS):
                await self._hci.close()
        self._hci = None
        self._device = None

    async def scan(
        self, *, timeout_s: float, service_uuids: tuple[str, ...] = ()
    ) -> list[Advertisement]:
        device = await self._ensure()
        seen: dict[str, Advertisement] = {}
        wanted = {u.lower() for u in service_uuids}

        def on_adv(adv: Any) -> None:
            data = adv.data
            uuids: list[str] = []  # de-duplicated below, order kept
            for ad_type in (0x02, 0x03, 0x06, 0x07):
                for u in data.get_all(ad_type) or []:
                    for item in u if isinstance(u, list) else [u]:
                        uuids.append(_full_uuid(item))
            if wanted and not wanted & set(uuids):
                return
            name = data.get(0x09) or data.get(0x08)
            address = str(adv.address).split("/")[0]
            seen[address] = Advertisement(
                address=address,
                name=name if isinstance(name, str) else None,
                rssi_dbm=adv.rssi,
                service_uuids=tuple(dict.fromkeys(uuids)),
            )

        device.on("advertisement", on_adv)
        try:
            await device.start_scanning(filter_duplicates=False)
            await asyncio.sleep(timeout_s)
            await device.stop_scanning()
        except _ERRORS as exc:
            raise TransportError(f"scan failed on {self.hci_spec}: {exc}") from exc
        finally:
            device.remove_listener("advertisement", on_adv)
        return sorted(seen.values(), key=lambda a: -(a.rssi_dbm or -999))

    async def connect(
        self,
        device: str,
        address: str,
        sink: EventSink,
        *,
        timeout_s: float,
        on_disconnect: DisconnectCallback | None = None,
    ) -> BumbleConnection:
        host = await self._ensure()
        clock = self.clock
        async with self._lock:  # bumble allows one pending LE connection at a time
            try:
                connection = await host.connect(
                    hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS), timeout=timeout_s
                )
            except _ERRORS as exc:
                raise TransportError(f"{device} ({address}): connect failed: {exc}") from exc
        try:
            peer = Peer(connection)
            # Like BlueZ, ask for a large ATT MTU: PMD frames do not fit in the default 23.
            await asyncio.wait_for(peer.request_mtu(247), timeout=timeout_s)
            await asyncio.wait_for(peer.discover_services(), timeout=timeout_s)
            for service in peer.services:
                await asyncio.wait_for(
                    peer.discover_characteristics(service=service), timeout=timeout_s
                )
        except _ERRORS as exc:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(connection.disconnect(), timeout=2)
            raise TransportError(f"{device} ({address}): service discovery failed: {exc}") from exc
        conn = BumbleConnection(device, connection, peer, sink, clock)

        def on_disconnection(reason: int) -> None:
            conn._mark_disconnected()
            sink(DeviceEvent(device, "disconnected", *clock.read(),
                             f"hci reason 0x{reason:02x}"))
            if on_disconnect is not None:
                result = on_disconnect(device)
                if asyncio.iscoroutine(result):
                    spawn(result)

        connection.on("disconnection", on_disconnection)
        sink(DeviceEvent(device, "connected", *clock.read(), address))
        sink(DeviceEvent(device, "services", *clock.read(),
                         ",".join(conn.service_uuids())))
        return conn
