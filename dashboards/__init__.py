"""Grafana dashboards for sensord, generated as code.

* :mod:`dashboards.generate` builds the Night, Person and Operations dashboards with Grafana's
  typed ``grafana-foundation-sdk`` and writes ``dashboards/*.json``; every measurement, tag and
  field name comes from :mod:`sensord.store.schema`.
* :mod:`dashboards.grafana` reproduces, as pure functions, what Grafana does to a panel's
  InfluxQL before InfluxDB sees it (``$timeFilter``, ``$__interval``, template variables) and
  what it does to the answer (series naming, the transformations the dashboards use), so the
  tests can run every query against a real InfluxDB without a Grafana.
* :mod:`dashboards.render` draws each dashboard's panels from those answers with matplotlib.

This package is a development tool (``pip install -e '.[dev]'``); it is not shipped with the
``sensord`` wheel.
"""
