"""sensord: sleep-sensor ingestion service.

BLE wearables -> append-only session logs -> 30-s sleep staging -> InfluxDB.
"""

__version__ = "0.1.0"
