"""Storage: schema (one source of names), line protocol, local SQLite store, InfluxDB sinks.

Pure: ``schema`` (names, types, units, validation), ``lineproto`` (row and columnar
encoders), ``points`` (streams and results -> lines), ``policy`` (response
classification, backoff). I/O: ``local`` (SQLite outbox, quarantine, annotations,
nights), ``sinks`` (InfluxDB 1.x HTTP, 2.x/3.x via influxdb-client), ``sender`` (the one
sender), ``backfill`` (session logs -> InfluxDB), ``service`` (what the CLI calls).
See ``docs/storage.md``.
"""
