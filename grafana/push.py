"""``pricewatch grafana push``: create or update the folder, datasources and dashboards in a
running Grafana through its HTTP API (grafana-client). Idempotent: a second push updates
the same objects (matched by uid) and creates nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana.dashboards import rendered
from grafana.datasources import DatasourceTargets, datasource_bodies

FOLDER_UID = "pricewatch"
FOLDER_TITLE = "Pricewatch"


@dataclass
class PushReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"created {what}" for what in self.created] + [
            f"updated {what}" for what in self.updated
        ]


def connect(url: str, token: str | None = None, user: str | None = None,
            password: str | None = None, timeout: float = 10.0) -> Any:  # fmt: skip
    """A grafana-client API for ``url`` with a service-account token or basic auth."""
    from grafana_client import GrafanaApi

    credential: str | tuple[str, str] | None = None
    if token:
        credential = token
    elif user is not None:
        credential = (user, password or "")
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout)


def _exists(get: Any, *args: Any) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        get(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def push(api: Any, targets: DatasourceTargets) -> PushReport:
    """Folder, then datasources (the dashboards refer to them), then dashboards."""
    report = PushReport()
    if _exists(api.folder.get_folder, FOLDER_UID):
        report.updated.append(f"folder {FOLDER_UID} (kept)")
    else:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.created.append(f"folder {FOLDER_UID}")

    for body in datasource_bodies(targets):
        uid = body["uid"]
        if _exists(api.datasource.get_datasource_by_uid, uid):
            api.datasource.update_datasource_by_uid(uid, body)
            report.updated.append(f"datasource {uid}")
        else:
            api.datasource.create_datasource(body)
            report.created.append(f"datasource {uid}")

    for uid, dashboard in rendered().items():
        existed = _exists(api.dashboard.get_dashboard, uid)
        api.dashboard.update_dashboard(
            {
                "dashboard": dashboard,
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": "pricewatch grafana push",
            }
        )
        (report.updated if existed else report.created).append(f"dashboard {uid}")
    return report
