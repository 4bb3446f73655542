"""BLE transports (I/O). See :mod:`sensord.ble.transport` for the protocol they share."""
