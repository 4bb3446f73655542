"""Production transport: BlueZ through bleak, connections established by bleak-retry-connector.

Why bleak-retry-connector: BlueZ keeps state across our process's life (a device object
that is "connected" from an unclean exit, a stale GATT cache, a discovery left running).
``establish_connection`` closes stale connections to the address, clears BlueZ's cache
when services fail to resolve and retries transient errors with its own short backoff; we
keep our own, longer all-night backoff policy (:mod:`sensord.backoff`) above it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection, get_device

from sensord.ble.transport import Advertisement, DisconnectCallback, EventSink, spawn
from sensord.errors import TransportError
from sensord.model import DeviceEvent, RawNotification
from sensord.timesource import Clock, SystemClock

log = logging.getLogger(__name__)


def _norm_uuid(uuid: str) -> str:
    return str(uuid).lower()


def _bluez_kwargs(adapter: str | None) -> dict[str, Any]:
    return {"bluez": {"adapter": adapter}} if adapter else {}


async def find_device_by_address(
    address: str, timeout_s: float, *, adapter: str | None = None
) -> BLEDevice | None:
    """Scan until ``address`` advertises; ``None`` after ``timeout_s``.

    Unlike ``BleakScanner.find_device_by_address`` (bleak 3.1), the detection callback is
    registered before discovery starts. bleak's helper subscribes only after
    ``StartDiscovery`` has returned, so a report that BlueZ sends while discovery starts is
    lost; a device that is announced once (BlueZ re-announces a device only when its
    advertisement changes) is then never found.
    """
    wanted = address.upper()
    found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

    def on_advertisement(ble_device: BLEDevice, _adv: AdvertisementData) -> None:
        if ble_device.address.upper() == wanted and not found.done():
            found.set_result(ble_device)

    async with BleakScanner(detection_callback=on_advertisement, **_bluez_kwargs(adapter)):
        try:
            return await asyncio.wait_for(found, timeout_s)
        except TimeoutError:
            return None


class BleakConnection:
    """An open bleak connection; notifications go to the transport's sink."""

    def __init__(self, device: str, client: BleakClient, sink: EventSink, clock: Clock) -> None:
        self._device = device
        self._client = client
        self._sink = sink
        self._clock = clock
        self._services = [
            (_norm_uuid(s.uuid), [_norm_uuid(c.uuid) for c in s.characteristics])
            for s in client.services
        ]

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    def service_uuids(self) -> list[str]:
        """UUIDs of the services discovered on connect."""
        return [service for service, _ in self._services]

    def characteristic_uuids(self) -> list[str]:
        """UUIDs of every characteristic discovered on connect."""
        return [char for _, chars in self._services for char in chars]

    async def start_notify(self, char_uuid: str) -> None:
        uuid = _norm_uuid(char_uuid)
        device, sink, clock = self._device, self._sink, self._clock

        def on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            sink(RawNotification(device, uuid, *clock.read(), bytes(data)))

        try:
            await self._client.start_notify(uuid, on_value)
        except (BleakError, EOFError, OSError) as exc:
            raise TransportError(f"{device}: subscribe to {uuid} failed: {exc}") from exc

    async def write(self, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        try:
            await self._client.write_gatt_char(_norm_uuid(char_uuid), data, response=response)
        except (BleakError, EOFError, OSError) as exc:
            raise TransportError(
                f"{self._device}: write {data.hex()} to {char_uuid} failed: {exc}"
            ) from exc

    async def read(self, char_uuid: str) -> bytes:
        try:
            return bytes(await self._client.read_gatt_char(_norm_uuid(char_uuid)))
        except (BleakError, EOFError, OSError) as exc:
            raise TransportError(f"{self._device}: read {char_uuid} failed: {exc}") from exc

    async def disconnect(self) -> None:
        try:
            await self._client.disconnect()
        except (BleakError, EOFError, OSError) as exc:
            log.warning("%s: disconnect failed (%s); BlueZ will time the link out", self._device,
                        exc)


class BleakTransport:
    """BlueZ (D-Bus) through bleak. ``adapter`` is e.g. ``hci0``; ``None`` = bleak's default."""

    def __init__(
        self, *, clock: Clock | None = None, adapter: str | None = None, max_attempts: int = 2
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.adapter = adapter
        self.max_attempts = max_attempts

    async def scan(
        self, *, timeout_s: float, service_uuids: tuple[str, ...] = ()
    ) -> list[Advertisement]:
        try:
            kwargs: dict[str, Any] = _bluez_kwargs(self.adapter)
            if service_uuids:
                kwargs["service_uuids"] = [_norm_uuid(u) for u in service_uuids]
            found = await BleakScanner.discover(timeout=timeout_s, return_adv=True, **kwargs)
        except (BleakError, OSError, EOFError) as exc:
            raise TransportError(f"scan failed: {exc} (is bluetoothd running?)") from exc
        out = []
        for ble_device, adv in found.values():
            out.append(
                Advertisement(
                    address=ble_device.address,
                    name=adv.local_name or ble_device.name,
                    rssi_dbm=adv.rssi,
                    service_uuids=tuple(_norm_uuid(u) for u in adv.service_uuids),
                )
            )
        return sorted(out, key=lambda a: -(a.rssi_dbm if a.rssi_dbm is not None else -999))

    async def _find(self, address: str, timeout_s: float) -> BLEDevice:
        # A device BlueZ already knows (seen in an earlier scan, or bonded) is used as is:
        # BlueZ only re-announces it when its advertisement changes.
        known = await get_device(address)
        if known is not None and (self.adapter is None or f"/{self.adapter}/" in str(
            known.details.get("path", "") if isinstance(known.details, dict) else ""
        )):
            return known
        ble_device = await find_device_by_address(address, timeout_s, adapter=self.adapter)
        if ble_device is None:
            raise TransportError(f"{address}: not found within {timeout_s:.0f} s of scanning")
        return ble_device

    async def connect(
        self,
        device: str,
        address: str,
        sink: EventSink,
        *,
        timeout_s: float,
        on_disconnect: DisconnectCallback | None = None,
    ) -> BleakConnection:
        clock = self.clock
        try:
            ble_device = await self._find(address, timeout_s)
        except (BleakError, OSError, EOFError) as exc:
            raise TransportError(f"{device} ({address}): scan failed: {exc}") from exc

        def disconnected(_client: BleakClient) -> None:
            sink(DeviceEvent(device, "disconnected", *clock.read(), "bluez"))
            if on_disconnect is not None:
                result = on_disconnect(device)
                if asyncio.iscoroutine(result):
                    spawn(result)

        try:
            client = await asyncio.wait_for(
                establish_connection(
                    BleakClientWithServiceCache,
                    ble_device,
                    device,
                    disconnected_callback=disconnected,
                    max_attempts=self.max_attempts,
                    timeout=timeout_s,
                ),
                timeout=timeout_s * (self.max_attempts + 1),
            )
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            raise TransportError(f"{device} ({address}): connect failed: {exc}") from exc
        conn = BleakConnection(device, client, sink, clock)
        sink(DeviceEvent(device, "connected", *clock.read(), address))
        sink(
            DeviceEvent(
                device, "services", *clock.read(),
                ",".join(conn.service_uuids()),
            )
        )
        return conn
