"""Every dashboard, and their JSON files for Grafana's file provisioning."""

from __future__ import annotations

import json
from pathlib import Path

from grafana.admin import ADMIN
from grafana.model import JSON, Dashboard
from grafana.user import USER

DASHBOARDS: tuple[Dashboard, ...] = (ADMIN, USER)

# Where docker-compose's Grafana reads them (mounted at /var/lib/grafana/dashboards).
DEFAULT_EXPORT_DIR = Path(__file__).resolve().parents[1] / "infra" / "grafana" / "dashboards"


def file_name(dashboard: Dashboard) -> str:
    return f"{dashboard.uid}.json"


def dashboard_json(dashboard: Dashboard) -> str:
    """Stable text (sorted keys, trailing newline): a regenerated file diffs only on change."""
    return json.dumps(dashboard.render(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, JSON]:
    """uid -> dashboard JSON."""
    return {d.uid: d.render() for d in DASHBOARDS}


def export(directory: Path = DEFAULT_EXPORT_DIR) -> list[Path]:
    """Write every dashboard to ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / file_name(dashboard)
        path.write_text(dashboard_json(dashboard))
        written.append(path)
    return written


def stale_files(directory: Path = DEFAULT_EXPORT_DIR) -> list[str]:
    """Files in ``directory`` that differ from what ``export`` would write (or are missing,
    or are left over from a dashboard that no longer exists)."""
    expected = {file_name(d): dashboard_json(d) for d in DASHBOARDS}
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    stale += sorted(p.name for p in directory.glob("*.json") if p.name not in expected)
    return stale
