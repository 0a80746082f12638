"""``grafana export`` and ``grafana push``: the dashboards as code (``grafana/``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pricewatch.settings import Settings


def cmd_grafana_export(settings: Settings, args: argparse.Namespace) -> None:
    from grafana.dashboards import export

    for path in export(args.out) if args.out else export():
        print(path)


def cmd_grafana_push(settings: Settings, args: argparse.Namespace) -> None:
    from grafana.datasources import DatasourceTargets
    from grafana.push import connect, push

    targets = DatasourceTargets(
        postgres_host=args.postgres_host,
        postgres_database=args.postgres_database,
        postgres_user=args.postgres_user,
        postgres_password=args.postgres_password,
        prometheus_url=args.prometheus_url,
    )
    api = connect(args.url, token=args.token, user=args.user, password=args.password)
    for line in push(api, targets).lines():
        print(line)


def add_grafana(sub: Any) -> None:
    p = sub.add_parser("grafana", help="the Grafana dashboards (grafana/)")
    gsub = p.add_subparsers(dest="grafana_command", required=True)
    gp = gsub.add_parser("export", help="write the dashboards' JSON for file provisioning")
    gp.add_argument("--out", type=Path, default=None, help="default: infra/grafana/dashboards")
    gp.set_defaults(func=cmd_grafana_export)
    gp = gsub.add_parser("push", help="create/update datasources and dashboards in a Grafana")
    gp.add_argument("--url", required=True, help="e.g. http://localhost:3000")
    gp.add_argument("--token", default=None, help="a service account token")
    gp.add_argument("--user", default=None, help="basic auth user (instead of --token)")
    gp.add_argument("--password", default=None, help="basic auth password")
    gp.add_argument("--postgres-host", default="postgres:5432", help="as Grafana reaches it")
    gp.add_argument("--postgres-database", default="pricewatch")
    gp.add_argument("--postgres-user", default="pricewatch")
    gp.add_argument("--postgres-password", default="")
    gp.add_argument("--prometheus-url", default="http://prometheus:9090")
    gp.set_defaults(func=cmd_grafana_push)
