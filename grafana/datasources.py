"""The two datasources every dashboard refers to, by uid: provisioned from
``infra/grafana/provisioning/datasources/pricewatch.yaml`` or pushed by ``grafana push``."""

from __future__ import annotations

from dataclasses import dataclass

from grafana.model import JSON, POSTGRES, PROMETHEUS


@dataclass(frozen=True)
class DatasourceTargets:
    """Where Grafana (not Pricewatch) reaches PostgreSQL and Prometheus. The defaults are
    docker-compose's service names."""

    postgres_host: str = "postgres:5432"
    postgres_database: str = "pricewatch"
    postgres_user: str = "pricewatch"
    postgres_password: str = ""
    postgres_sslmode: str = "disable"
    prometheus_url: str = "http://prometheus:9090"


def datasource_bodies(targets: DatasourceTargets) -> list[JSON]:
    """Bodies for Grafana's /api/datasources (create, or update by uid)."""
    postgres: JSON = {
        "uid": POSTGRES.uid,
        "name": POSTGRES.name,
        "type": POSTGRES.type,
        "access": "proxy",
        "url": targets.postgres_host,
        "user": targets.postgres_user,
        "database": targets.postgres_database,
        "jsonData": {
            "database": targets.postgres_database,
            "sslmode": targets.postgres_sslmode,
            "postgresVersion": 1600,
            "timescaledb": False,
        },
        "secureJsonData": {"password": targets.postgres_password},
    }
    prometheus: JSON = {
        "uid": PROMETHEUS.uid,
        "name": PROMETHEUS.name,
        "type": PROMETHEUS.type,
        "access": "proxy",
        "url": targets.prometheus_url,
        "isDefault": True,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }
    return [postgres, prometheus]
