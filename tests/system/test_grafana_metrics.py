"""Every metric a dashboard's PromQL reads is really served: start the whole pipeline as
real processes (a Stack: workers, scraper, every sink including the S3 archive on a moto
server, the API), send a price drop through it, scrape each process's /metrics, and look
up every metric name the Admin dashboard uses.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from grafana.dashboards import rendered
from grafana.promql import exposed_names, metric_names
from launcher.processes import free_port
from launcher.stack import Stack
from sinks.archive.sink import make_s3_client
from tests.conftest import Broker, fresh_database
from tests.helpers import wait_for
from tests.system.test_end_to_end import _keep_logs, _settings, run_price_drop_journey

pytestmark = pytest.mark.timeout(300)


# Used by the dashboards, added by the scrapers branch (not on this branch yet).
def dashboard_metric_names() -> dict[str, set[str]]:
    """metric name -> titles of the panels that read it."""
    used: dict[str, set[str]] = {}
    for dashboard in rendered().values():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                for name in metric_names(target.get("expr", "")):
                    used.setdefault(name, set()).add(panel["title"])
    return used


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield {**env, "endpoint": f"http://127.0.0.1:{port}"}
    finally:
        server.stop()


@pytest.mark.integration
def test_every_dashboard_metric_is_served_by_a_running_process(
    tmp_path: Path,
    broker: Broker,
    postgres_server: str,
    unique_prefix: str,
    s3: dict[str, str],
) -> None:
    for database_url in fresh_database(postgres_server):
        settings = _settings(
            tmp_path,
            unique_prefix,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_embedded=broker.embedded,
            database_url=database_url,
            s3_bucket=f"archive-{uuid.uuid4().hex[:12]}",
            s3_endpoint_url=s3["endpoint"],
            s3_region="us-east-1",
        )
        make_s3_client(settings).create_bucket(Bucket=settings.s3_bucket)
        extra_env = {k: v for k, v in s3.items() if k.startswith("AWS_")}
        with Stack(settings, extra_env=extra_env) as stack:
            try:
                check_metrics(stack)
            finally:
                _keep_logs(stack, "grafana-metrics")


def check_metrics(stack: Stack) -> None:
    urls = stack.metrics_urls()
    # One endpoint per process, every one on its own port.
    assert set(urls) >= {
        "worker-0",
        "scraper-0",
        "postgres-sink",
        "subscriptions-sink",
        "events-sink",
        "email-sink",
        "channels-sink",
        "archive-sink",
        "api",
    }
    assert len(set(stack.metrics_ports.values())) == len(stack.metrics_ports)

    run_price_drop_journey(stack)  # events, notifications, an email, rows, archive objects

    pages: dict[str, str] = {}

    def lag_and_tables_reported() -> bool:
        pages.update({name: scrape(url) for name, url in urls.items()})
        worker, sink = pages["worker-0"], pages["postgres-sink"]
        return (
            f'pricewatch_consumer_lag{{group="{stack.settings.app_id}"' in worker
            and 'pricewatch_stream_table_keys{table="product_state"} 1.0' in worker
            and 'pricewatch_consumer_lag{group="' in sink
        )

    # The worker reports its gauges on a 10 s timer, after its first commit.
    wait_for(lag_and_tables_reported, timeout=60, interval=1, what="lag and table gauges")

    served: set[str] = set()
    for page in pages.values():
        served |= exposed_names(page)
    used = dashboard_metric_names()
    missing = {name: sorted(panels) for name, panels in used.items() if name not in served}
    assert not missing, f"dashboards read metrics no process serves: {missing}"

    # The journey really moved numbers on the dashboards' main counters.
    worker, email_sink = pages["worker-0"], pages["email-sink"]
    assert 'pricewatch_stream_events_total{event_type="price_drop"}' in worker
    assert 'pricewatch_stream_notifications_total{kind="target_price_reached"} 1.0' in worker
    # The verification email and the alert.
    assert 'pricewatch_emails_sent_total{backend="outbox"} 2.0' in email_sink
    assert "pricewatch_stream_detection_latency_seconds_count" in worker
    assert "pricewatch_archive_objects_total" in pages["archive-sink"]
    assert stack.dead_children() == []
