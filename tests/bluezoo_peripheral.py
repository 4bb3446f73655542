"""A virtual BLE heart-rate peripheral for BlueZoo, registered over BlueZ's D-Bus API.

Run as a separate process on the same (private) system bus as ``bluezoo``::

    python tests/bluezoo_peripheral.py --adapter /org/bluez/hci1 --name "HR Sim" \
        --frames 10,48,40,03 --interval-s 0.05

It registers an LE advertisement (Heart Rate service UUID, local name) and a GATT
application with the Heart Rate service (0x180D: Heart Rate Measurement 0x2A37, notify)
and the Battery service (0x180F: Battery Level 0x2A19, read), exactly the way a
BlueZ-based peripheral would (``LEAdvertisingManager1.RegisterAdvertisement`` and
``GattManager1.RegisterApplication``). While a central is subscribed it sends the given
frames in a loop, one every ``interval_s``, by emitting ``PropertiesChanged(Value)``.
BlueZoo relays them to the central's view of the characteristic, which is what bleak
listens to. Only used by tests: this process stands in for a wearable.
"""

import argparse
import asyncio

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
APP_PATH = "/com/sensord/sim"


class Advertisement(ServiceInterface):
    def __init__(self, name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._name = name

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":  # type: ignore[valid-type]  # noqa: F722, N802
        return [HR_SERVICE]

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802
        return True

    @method()
    def Release(self):  # noqa: N802
        return None


class Service(ServiceInterface):
    def __init__(self, uuid: str, handle: int) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid
        self._handle = handle

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> "q":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._handle


class Characteristic(ServiceInterface):
    def __init__(
        self, uuid: str, service_path: str, flags: list[str], value: bytes, handle: int
    ) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._uuid = uuid
        self._service_path = service_path
        self._flags = flags
        self._value = value
        self._handle = handle
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # type: ignore[valid-type]  # noqa: F722, N802
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> "q":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._handle

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # type: ignore[name-defined]  # noqa: F821, N802
        return self._value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802
        return self.notifying

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # type: ignore[name-defined]  # noqa: F722, F821, N802
        return self._value

    @method()
    def StartNotify(self):  # noqa: N802
        self.notifying = True

    @method()
    def StopNotify(self):  # noqa: N802
        self.notifying = False

    @method()
    def Confirm(self):  # noqa: N802
        return None

    def notify(self, value: bytes) -> None:
        self._value = value
        self.emit_properties_changed({"Value": value})


async def serve(adapter: str, name: str, frames: list[bytes], interval_s: float) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    hr_service_path = f"{APP_PATH}/service0"
    bat_service_path = f"{APP_PATH}/service1"
    hr_char = Characteristic(HR_MEASUREMENT, hr_service_path, ["notify"], frames[0], 0x0011)
    bat_char = Characteristic(BATTERY_LEVEL, bat_service_path, ["read"], bytes([87]), 0x0021)
    bus.export(hr_service_path, Service(HR_SERVICE, 0x0010))
    bus.export(f"{hr_service_path}/char0", hr_char)
    bus.export(bat_service_path, Service(BATTERY_SERVICE, 0x0020))
    bus.export(f"{bat_service_path}/char0", bat_char)
    bus.export(f"{APP_PATH}/adv0", Advertisement(name))

    introspection = await bus.introspect("org.bluez", adapter)
    proxy = bus.get_proxy_object("org.bluez", adapter, introspection)
    await proxy.get_interface("org.bluez.GattManager1").call_register_application(APP_PATH, {})
    await proxy.get_interface("org.bluez.LEAdvertisingManager1").call_register_advertisement(
        f"{APP_PATH}/adv0", {}
    )
    print("ready", flush=True)
    i = 0
    while True:
        await asyncio.sleep(interval_s)
        if hr_char.notifying:
            hr_char.notify(frames[i % len(frames)])
            i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", default="/org/bluez/hci1")
    parser.add_argument("--name", default="HR Sim")
    parser.add_argument(
        "--frames", default="1048c003", help="comma-separated hex payloads to cycle through"
    )
    parser.add_argument("--interval-s", type=float, default=0.05)
    args = parser.parse_args()
    frames = [bytes.fromhex(f) for f in args.frames.split(",")]
    asyncio.run(serve(args.adapter, args.name, frames, args.interval_s))


if __name__ == "__main__":
    main()
