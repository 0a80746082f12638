"""``pricewatch grafana push`` against a real HTTP server that answers like Grafana's API
and records every request grafana-client sends; and against a real Grafana when
``PRICEWATCH_TEST_GRAFANA_URL`` is set.

No Grafana server runs on these machines (no Docker engine, no Grafana package here), so the
real push is optional by design: it is skipped without a URL even with REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from grafana.dashboards import DASHBOARDS, rendered
from grafana.datasources import DatasourceTargets
from grafana.push import FOLDER_UID, connect, push
from launcher.cli import main
from launcher.processes import free_port


@dataclass
class FakeGrafana:
    """Keeps what was pushed, answers 404 for what does not exist, records requests."""

    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    folders: dict[str, Any] = field(default_factory=dict)
    datasources: dict[str, Any] = field(default_factory=dict)
    dashboards: dict[str, Any] = field(default_factory=dict)
    refuse_with: int | None = None  # answer every request with this status

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record])
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        app.router.add_post("/api/datasources", self.create_datasource)
        app.router.add_put("/api/datasources/uid/{uid}", self.update_datasource)
        app.router.add_get("/api/dashboards/uid/{uid}", self.get_dashboard)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        return app

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            (request.method, request.path, body, request.headers.get("Authorization"))
        )
        if self.refuse_with is not None:
            return web.json_response({"message": "refused"}, status=self.refuse_with)
        response: web.StreamResponse = await handler(request)
        return response

    def calls(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests]

    @staticmethod
    def _missing() -> web.Response:
        return web.json_response({"message": "not found"}, status=404)

    async def get_folder(self, request: web.Request) -> web.Response:
        folder = self.folders.get(request.match_info["uid"])
        return web.json_response(folder) if folder else self._missing()

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.folders[body["uid"]] = {"id": len(self.folders) + 1, **body}
        return web.json_response(self.folders[body["uid"]])

    async def get_datasource(self, request: web.Request) -> web.Response:
        found = self.datasources.get(request.match_info["uid"])
        return web.json_response(found) if found else self._missing()

    async def create_datasource(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["uid"] in self.datasources:
            return web.json_response({"message": "data source exists"}, status=409)
        self.datasources[body["uid"]] = body
        return web.json_response({"message": "Datasource added", "datasource": body})

    async def update_datasource(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.datasources:
            return self._missing()
        self.datasources[uid] = await request.json()
        return web.json_response({"message": "Datasource updated"})

    async def get_dashboard(self, request: web.Request) -> web.Response:
        found = self.dashboards.get(request.match_info["uid"])
        return web.json_response({"dashboard": found}) if found else self._missing()

    async def save_dashboard(self, request: web.Request) -> web.Response:
        body = await request.json()
        dashboard = body["dashboard"]
        if dashboard["uid"] in self.dashboards and not body.get("overwrite"):
            return web.json_response({"message": "version-mismatch"}, status=412)
        self.dashboards[dashboard["uid"]] = dashboard
        return web.json_response({"status": "success", "uid": dashboard["uid"]})


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


DATASOURCE_UIDS = ["pricewatch-postgres", "pricewatch-prometheus"]
DASHBOARD_UIDS = [d.uid for d in DASHBOARDS]


def expected_calls(first: bool) -> list[tuple[str, str]]:
    calls = [("GET", f"/api/folders/{FOLDER_UID}")]
    if first:
        calls.append(("POST", "/api/folders"))
    for uid in DATASOURCE_UIDS:
        calls.append(("GET", f"/api/datasources/uid/{uid}"))
        update = ("PUT", f"/api/datasources/uid/{uid}")
        calls.append(("POST", "/api/datasources") if first else update)
    for uid in DASHBOARD_UIDS:
        calls += [("GET", f"/api/dashboards/uid/{uid}"), ("POST", "/api/dashboards/db")]
    return calls  # fmt: skip


async def test_push_creates_then_updates_the_same_objects(
    grafana: tuple[FakeGrafana, str],
) -> None:
    fake, url = grafana
    targets = DatasourceTargets(postgres_password="s3cret", prometheus_url="http://prom:9090")
    api = connect(url, token="glsa_test_token")

    first = await asyncio.to_thread(push, api, targets)
    assert fake.calls() == expected_calls(first=True)
    assert first.created == [
        f"folder {FOLDER_UID}",
        *(f"datasource {u}" for u in DATASOURCE_UIDS),
        *(f"dashboard {u}" for u in DASHBOARD_UIDS),
    ]
    assert {auth for *_, auth in fake.requests} == {"Bearer glsa_test_token"}
    assert fake.folders[FOLDER_UID]["title"] == "Pricewatch"
    postgres = fake.datasources["pricewatch-postgres"]
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["url"] == "postgres:5432" and postgres["jsonData"]["database"] == "pricewatch"
    assert postgres["secureJsonData"] == {"password": "s3cret"}
    assert fake.datasources["pricewatch-prometheus"]["url"] == "http://prom:9090"
    saves = [body for method, path, body, _ in fake.requests if path == "/api/dashboards/db"]
    assert [s["folderUid"] for s in saves] == [FOLDER_UID] * len(DASHBOARDS)
    assert all(s["overwrite"] is True for s in saves)
    assert {s["dashboard"]["uid"]: s["dashboard"] for s in saves} == rendered()

    fake.requests.clear()
    second = await asyncio.to_thread(push, api, targets)
    assert fake.calls() == expected_calls(first=False)
    assert second.created == []
    assert len(fake.datasources) == 2 and len(fake.dashboards) == len(DASHBOARDS)


async def test_cli_push_with_basic_auth(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    argv = ["grafana", "push", "--url", url, "--user", "admin", "--password", "pw"]
    await asyncio.to_thread(main, argv)
    expected = "Basic " + base64.b64encode(b"admin:pw").decode()
    assert {auth for *_, auth in fake.requests} == {expected}
    assert set(fake.dashboards) == set(DASHBOARD_UIDS)


async def test_push_stops_on_a_refusal(grafana: tuple[FakeGrafana, str]) -> None:
    from grafana_client.client import GrafanaUnauthorizedError

    fake, url = grafana
    fake.refuse_with = 401
    with pytest.raises(GrafanaUnauthorizedError):
        await asyncio.to_thread(push, connect(url, token="wrong"), DatasourceTargets())
    assert fake.calls() == [("GET", f"/api/folders/{FOLDER_UID}")]  # nothing after it


REAL_GRAFANA = os.environ.get("PRICEWATCH_TEST_GRAFANA_URL")


@pytest.mark.skipif(not REAL_GRAFANA, reason="PRICEWATCH_TEST_GRAFANA_URL is not set (optional)")
def test_push_to_a_real_grafana() -> None:
    """e.g. PRICEWATCH_TEST_GRAFANA_URL=http://admin:admin@localhost:3000"""
    assert REAL_GRAFANA is not None
    api = connect(REAL_GRAFANA, token=os.environ.get("PRICEWATCH_TEST_GRAFANA_TOKEN"))
    push(api, DatasourceTargets())
    again = push(api, DatasourceTargets())
    assert again.created == []
    for uid in DASHBOARD_UIDS:
        stored = api.dashboard.get_dashboard(uid)
        assert stored["dashboard"]["title"] == rendered()[uid]["title"]
        assert stored["meta"]["folderUid"] == FOLDER_UID
    for uid in DATASOURCE_UIDS:
        assert api.datasource.get_datasource_by_uid(uid)["uid"] == uid
