"""Grafana dashboards as code (admin and user views). Not built yet: see the dashboards
issue. Every process already exposes Prometheus metrics (``--metrics-port``)."""
