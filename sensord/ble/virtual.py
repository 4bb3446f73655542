"""Virtual BLE air and wearables on Google's bumble stack (for tests, benches and demos).

Two kinds of process, talking HCI (H4 framing) over loopback TCP exactly like a USB dongle
or a ``tcp-client:`` bumble transport would:

``python -m sensord.ble.virtual air --slots central,chest,wrist``
    One emulated radio medium (a bumble ``LocalLink``) with one emulated controller per
    *slot*; each slot listens on ``127.0.0.1:<free port>`` and prints ``{"slot": port}`` as a
    JSON line. Every TCP connection to a slot gets a fresh controller. When a host's
    connection drops:

    * a **peripheral** slot goes *silent*: its controller leaves the air but its peers are
      not told (the link stays up on the central's side and no data flows), which is what a
      wearable whose firmware hangs, or whose process is SIGKILLed, looks like;
    * a **central** slot's peers see a supervision timeout (HCI reason 0x08), as when the
      host running the daemon dies.

``python -m sensord.ble.virtual peripheral --profile hr --hci tcp-client:127.0.0.1:PORT``
    A wearable host: advertises, serves GATT, streams notifications at ``speed`` times real
    time while a central is subscribed. ``SIGUSR1`` makes it disconnect (and advertise
    again); ``SIGUSR2`` makes it disconnect and vanish (no advertising) for ``--vanish-s``
    real seconds. Profiles: ``hr`` (Heart Rate 0x180D with RR; the Energy Expended field
    carries a 16-bit sequence number so tests can count every frame), ``pmd`` (Heart Rate plus a
    Polar Measurement Data service: control point + 50 Hz accelerometer in raw 16-bit frames,
    like a Polar H10 or Verity Sense),
    ``garbage`` (Heart Rate service that floods malformed payloads and notifies an unknown
    characteristic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from bumble import hci, ll
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import StreamPacketSource

from sensord.ble.transport import spawn
from sensord.devices import heart_rate as hrs
from sensord.devices import polar_pmd as pmd

log = logging.getLogger(__name__)

HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
PMD_SERVICE = pmd.PMD_SERVICE
PMD_CONTROL = pmd.PMD_CONTROL_POINT
PMD_DATA = pmd.PMD_DATA
UNKNOWN_CHAR = "5e45d000-0000-4000-8000-00000000beef"

ACC_RATE_HZ = 50
ACC_SAMPLES_PER_FRAME = 36
PMD_MEASUREMENT_ACC = int(pmd.MeasurementType.ACC)


# --------------------------------------------------------------------------- the air


class _TolerantLink(LocalLink):
    """A LocalLink where control PDUs to a controller that has left are dropped, not raised."""

    def send_ll_control_pdu(
        self, sender_address: hci.Address, receiver_address: hci.Address, packet: Any
    ) -> None:
        if self.find_le_controller(receiver_address) is None:
            log.debug("dropping LL PDU %s to vanished %s", packet, receiver_address)
            return
        super().send_ll_control_pdu(sender_address, receiver_address, packet)


class _HostLinkProtocol(asyncio.Protocol):
    """One host's TCP connection to a slot: a fresh controller while it lasts."""

    def __init__(self, air: VirtualAir, slot: str) -> None:
        self.air = air
        self.slot = slot
        self.source = StreamPacketSource()
        self.controller: Controller | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.controller = Controller(
            f"{self.slot}", host_source=self.source, host_sink=self, link=self.air.link
        )
        self.air.attach(self.slot, self.controller)

    def on_packet(self, packet: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(packet)

    def data_received(self, data: bytes) -> None:
        self.source.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.controller is not None:
            self.air.detach(self.slot, self.controller)
            self.controller = None


class VirtualAir:
    """Emulated radio medium with named controller slots on loopback TCP ports."""

    def __init__(self, centrals: tuple[str, ...] = ("central",)) -> None:
        self.link = _TolerantLink()
        self.centrals = set(centrals)
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self.current: dict[str, Controller] = {}

    async def open(self, slots: list[str]) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        for slot in slots:
            server = await loop.create_server(self._protocol_factory(slot), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports[slot] = server.sockets[0].getsockname()[1]
        return dict(self.ports)

    def _protocol_factory(self, slot: str) -> Callable[[], _HostLinkProtocol]:
        return lambda: _HostLinkProtocol(self, slot)

    def attach(self, slot: str, controller: Controller) -> None:
        old = self.current.get(slot)
        if old is not None:
            self.detach(slot, old)
        self.current[slot] = controller

    def detach(self, slot: str, controller: Controller) -> None:
        if self.current.get(slot) is controller:
            del self.current[slot]
        if controller not in self.link.controllers:
            return
        if slot in self.centrals:
            # The peers time the link out: HCI 0x08, connection timeout.
            for conn in list(controller.le_connections.values()):
                peer = self.link.find_le_controller(conn.peer_address)
                if peer is not None and peer is not controller:
                    peer.on_ll_control_pdu(
                        conn.self_address,
                        ll.TerminateInd(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR),
                    )
        # A peripheral just leaves the air; its central is not told (a silent device).
        self.link.remove_controller(controller)

    async def close(self) -> None:
        for server in self._servers:
            server.close()


async def _run_air(slots: list[str], centrals: list[str]) -> None:
    air = VirtualAir(tuple(centrals))
    ports = await air.open(slots)
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().create_future()


# --------------------------------------------------------------------------- payloads


def hr_frame(seq: int) -> bytes:
    """Heart Rate Measurement with contact, one RR interval and ``seq`` in the energy field.

    HR cycles 50..79 bpm; RR is 60/HR s in 1/1024-s ticks. The Energy Expended field (a
    legal uint16 of the Heart Rate Service) carries a sequence number so tests can check
    that every frame sent was recorded.
    """
    hr_bpm = 50 + seq % 30
    return hrs.encode_hrm(hr_bpm, [round(60.0 / hr_bpm * 1024)], contact=True,
                          energy_kj=seq & 0xFFFF)


def acc_frame(seq: int) -> bytes:
    """A raw 16-bit PMD accelerometer frame of 36 samples at 50 Hz (milli-g).

    The sensor timestamp is the time of the last sample on the device's own clock. The
    signal is gravity on z plus a slow 0.25 Hz sway on x.
    """
    n = ACC_SAMPLES_PER_FRAME
    i = np.arange(seq * n, seq * n + n)
    acc_mg = np.stack(
        [np.round(100 * np.sin(2 * np.pi * 0.25 * i / ACC_RATE_HZ)), np.full(n, 10),
         np.full(n, 1000)], axis=1,
    ).astype(np.int64)
    last_t_ns = int(i[-1]) * (1_000_000_000 // ACC_RATE_HZ)
    return pmd.encode_acc_raw(acc_mg, last_t_ns, frame_type=1)


# --------------------------------------------------------------------------- wearables


@dataclass
class PeripheralOptions:
    profile: str
    hci_spec: str
    address: str
    name: str
    speed: float
    vanish_s: float
    flood_hz: float


class VirtualWearable:
    """A bumble peripheral host serving one of the profiles above."""

    def __init__(self, options: PeripheralOptions) -> None:
        self.options = options
        self.device: Device | None = None
        self.connection: Connection | None = None
        self.streaming_acc = False
        self.seq = 0
        self.acc_seq = 0
        self.vanished = False
        self.hr_subscribed = False

    def _on_hr_subscription(self, _bearer: Any, notify: bool, _indicate: bool) -> None:
        self.hr_subscribed = notify

    def _services(self) -> list[Service]:
        battery = Characteristic(
            BATTERY_LEVEL, Characteristic.Properties.READ, Characteristic.READABLE, bytes([87])
        )
        services = [Service(BATTERY_SERVICE, [battery])]
        profile = self.options.profile
        if profile in ("hr", "garbage", "pmd"):
            self.hr_char = Characteristic(
                HR_MEASUREMENT, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
            )
            services.append(Service(HR_SERVICE, [self.hr_char]))
            self.hr_char.on("subscription", self._on_hr_subscription)
        if profile == "garbage":
            self.unknown_char = Characteristic(
                UNKNOWN_CHAR, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
            )
            services.append(Service("5e45d000-0000-4000-8000-00000000cafe", [self.unknown_char]))
        if profile == "pmd":
            self.pmd_cp: Characteristic[Any] = Characteristic(
                PMD_CONTROL,
                Characteristic.Properties.READ
                | Characteristic.Properties.WRITE
                | Characteristic.Properties.INDICATE,
                Characteristic.READABLE | Characteristic.WRITEABLE,
                CharacteristicValue(
                    read=lambda _c: bytes([0x0F, 0x05]), write=self._on_cp_write
                ),
            )
            self.pmd_data = Characteristic(
                PMD_DATA, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
            )
            services.append(Service(PMD_SERVICE, [self.pmd_cp, self.pmd_data]))
        return services

    def _on_cp_write(self, connection: Connection, value: bytes) -> None:
        op = value[0] if value else 0
        mtype = value[1] if len(value) > 1 else 0
        params = b""
        if mtype != PMD_MEASUREMENT_ACC:
            status = 0x03  # not supported
        elif op == pmd.Op.GET_MEASUREMENT_SETTINGS:
            status = 0
            params = pmd.encode_settings({pmd.SettingType.SAMPLE_RATE: [25, 50, 100],
                                          pmd.SettingType.RESOLUTION: [16],
                                          pmd.SettingType.RANGE: [2, 4, 8]})
        elif op in (pmd.Op.REQUEST_MEASUREMENT_START, pmd.Op.STOP_MEASUREMENT):
            status = 0
            self.streaming_acc = op == pmd.Op.REQUEST_MEASUREMENT_START
        else:
            status = 0x01  # invalid op code
        reply = pmd.encode_control_point_response(op, mtype, status, parameters=params)
        assert self.device is not None
        spawn(self.device.indicate_subscribers(self.pmd_cp, reply))

    async def _advertise(self) -> None:
        assert self.device is not None
        if self.options.profile == "pmd":
            uuid_type = AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS
            uuid_bytes = bytes(UUID(PMD_SERVICE).to_bytes(force_128=True))
        else:
            uuid_type = AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS
            uuid_bytes = struct.pack("<H", 0x180D)
        self.device.advertising_data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.options.name.encode()),
                    (uuid_type, uuid_bytes),
                ]
            )
        )
        await self.device.start_advertising(auto_restart=False)

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        connection.on("disconnection", self._on_disconnection)

    def _on_disconnection(self, _reason: int) -> None:
        self.connection = None
        self.streaming_acc = False
        self.hr_subscribed = False
        if not self.vanished:
            spawn(self._advertise())

    async def disconnect(self, vanish: bool) -> None:
        assert self.device is not None
        self.vanished = vanish
        if self.connection is not None:
            await self.connection.disconnect()
        if vanish:
            await self.device.stop_advertising()
            await asyncio.sleep(self.options.vanish_s)
            self.vanished = False
            await self._advertise()

    async def _stream(self) -> None:
        assert self.device is not None
        speed = self.options.speed
        hr_period = 1.0 / speed
        acc_period = ACC_SAMPLES_PER_FRAME / ACC_RATE_HZ / speed
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        next_hr, next_acc = t0, t0
        profile = self.options.profile
        flood_period = 1.0 / self.options.flood_hz if self.options.flood_hz > 0 else hr_period
        while True:
            now = loop.time()
            conn = self.connection
            if profile in ("hr", "pmd") and now >= next_hr:
                next_hr += hr_period
                if conn is not None and self.hr_subscribed:
                    await self.device.notify_subscribers(self.hr_char, hr_frame(self.seq))
                    self.seq += 1
            elif profile == "pmd" and now >= next_acc:
                next_acc += acc_period
                if conn is not None and self.streaming_acc:
                    await self.device.notify_subscribers(self.pmd_data, acc_frame(self.acc_seq))
                    self.acc_seq += 1
            elif profile == "garbage" and now >= next_hr:
                next_hr += flood_period
                if conn is not None:
                    junk = os.urandom(1 + self.seq % 7)
                    bad = junk if self.seq % 3 else bytes([0x01])  # HR uint16 flag, no value
                    await self.device.notify_subscribers(self.hr_char, bad)
                    await self.device.notify_subscribers(self.unknown_char, junk)
                    self.seq += 1
            else:
                wake = min(next_hr, next_acc) if profile == "pmd" else next_hr
                await asyncio.sleep(max(0.0, min(wake, now + 0.05) - now))
                if next_hr < now - 1.0:  # fell behind (no subscriber, or overloaded)
                    next_hr = now
                if next_acc < now - 1.0:
                    next_acc = now

    async def run(self) -> None:
        async with await open_transport(self.options.hci_spec) as hci_transport:
            self.device = Device.with_hci(
                self.options.name,
                hci.Address(self.options.address),
                hci_transport.source,
                hci_transport.sink,
            )
            self.device.add_services(self._services())
            self.device.on("connection", self._on_connection)
            await self.device.power_on()
            await self._advertise()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(
                signal.SIGUSR1, lambda: spawn(self.disconnect(False))
            )
            loop.add_signal_handler(
                signal.SIGUSR2, lambda: spawn(self.disconnect(True))
            )
            print("ready", flush=True)
            await self._stream()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sensord.ble.virtual", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    air = sub.add_parser("air", help="run the emulated radio medium")
    air.add_argument("--slots", default="central,chest,wrist")
    air.add_argument("--centrals", default="central")
    per = sub.add_parser("peripheral", help="run one virtual wearable")
    per.add_argument("--profile", choices=("hr", "pmd", "garbage"), default="hr")
    per.add_argument("--hci", required=True, help="bumble transport, e.g. tcp-client:127.0.0.1:P")
    per.add_argument("--address", default="F0:00:00:00:00:01")
    per.add_argument("--name", default="Virtual HR")
    per.add_argument("--speed", type=float, default=1.0, help="time acceleration factor")
    per.add_argument("--vanish-s", type=float, default=5.0)
    per.add_argument("--flood-hz", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.cmd == "air":
        asyncio.run(_run_air(args.slots.split(","), args.centrals.split(",")))
    else:
        options = PeripheralOptions(
            args.profile, args.hci, args.address, args.name, args.speed, args.vanish_s,
            args.flood_hz,
        )
        asyncio.run(VirtualWearable(options).run())


if __name__ == "__main__":
    main()
