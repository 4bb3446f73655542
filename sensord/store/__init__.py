"""Storage: schema (one source of names), line protocol, local SQLite store, InfluxDB sinks.

``schema`` and ``lineproto`` are pure; ``local`` (SQLite), ``sinks`` and ``sender`` do I/O.
"""
