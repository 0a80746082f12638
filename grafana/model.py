"""Typed builders for the few Grafana dashboard JSON shapes Pricewatch uses.

Plain dicts out (what Grafana's dashboard API and file provisioning read), built from small
dataclasses in: a panel says what it shows and which query feeds it, and the layout (ids,
grid positions) is computed when a dashboard is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 10.4 / 11: panels with fieldConfig, targets with datasource refs
GRID_WIDTH = 24

POSTGRES_TYPE = "grafana-postgresql-datasource"
PROMETHEUS_TYPE = "prometheus"


@dataclass(frozen=True)
class Datasource:
    uid: str
    type: str
    name: str

    def ref(self) -> JSON:
        return {"type": self.type, "uid": self.uid}


POSTGRES = Datasource("pricewatch-postgres", POSTGRES_TYPE, "Pricewatch PostgreSQL")
PROMETHEUS = Datasource("pricewatch-prometheus", PROMETHEUS_TYPE, "Pricewatch Prometheus")
DATASOURCES = (POSTGRES, PROMETHEUS)


@dataclass(frozen=True)
class PromQuery:
    expr: str
    legend: str = ""

    def target(self, ref_id: str) -> JSON:
        return {
            "refId": ref_id,
            "datasource": PROMETHEUS.ref(),
            "editorMode": "code",
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "range": True,
        }


SqlFormat = Literal["time_series", "table"]


@dataclass(frozen=True)
class SqlQuery:
    sql: str
    format: SqlFormat = "table"

    def target(self, ref_id: str) -> JSON:
        return {
            "refId": ref_id,
            "datasource": POSTGRES.ref(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql.strip(),
        }


PanelType = Literal["timeseries", "stat", "table", "barchart"]


@dataclass(frozen=True)
class Panel:
    title: str
    type: PanelType
    queries: tuple[PromQuery | SqlQuery, ...]
    width: int = 12
    height: int = 8
    unit: str = ""
    description: str = ""
    options: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)  # fieldConfig.defaults.custom
    overrides: tuple[JSON, ...] = ()
    thresholds: tuple[JSON, ...] = ()

    @property
    def datasource(self) -> Datasource:
        kinds = {type(q) for q in self.queries}
        if len(kinds) != 1:
            raise ValueError(f"panel {self.title!r} mixes query kinds")
        return PROMETHEUS if kinds == {PromQuery} else POSTGRES

    def render(self, panel_id: int, x: int, y: int) -> JSON:
        defaults: JSON = {"custom": dict(self.custom)}
        if self.unit:
            defaults["unit"] = self.unit
        if self.thresholds:
            defaults["thresholds"] = {"mode": "absolute", "steps": list(self.thresholds)}
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "datasource": self.datasource.ref(),
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
            "fieldConfig": {"defaults": defaults, "overrides": list(self.overrides)},
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class QueryVariable:
    """A template variable filled by a SQL query (``__text``/``__value`` columns)."""

    name: str
    label: str
    sql: str
    multi: bool = False
    include_all: bool = False

    def render(self) -> JSON:
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": POSTGRES.ref(),
            "query": self.sql.strip(),
            "definition": self.sql.strip(),
            "refresh": 2,  # on time range change, so new users and products show up
            "multi": self.multi,
            "includeAll": self.include_all,
            "sort": 0,
            "hide": 0,
            "options": [],
            "current": {},
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ("pricewatch",)
    variables: tuple[QueryVariable, ...] = ()
    time_from: str = "now-24h"
    refresh: str = "30s"

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]

    def render(self) -> JSON:
        rendered: list[JSON] = []
        next_id = 1
        y = 0
        for row in self.rows:
            rendered.append(
                {
                    "id": next_id,
                    "type": "row",
                    "title": row.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                    "panels": [],
                }
            )
            next_id += 1
            y += 1
            x = 0
            line_height = 0
            for panel in row.panels:
                if x + panel.width > GRID_WIDTH:
                    x, y, line_height = 0, y + line_height, 0
                rendered.append(panel.render(next_id, x, y))
                next_id += 1
                x += panel.width
                line_height = max(line_height, panel.height)
            y += line_height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "annotations": {"list": []},
            "templating": {"list": [v.render() for v in self.variables]},
            "panels": rendered,
        }


def stacked_bars() -> JSON:
    return {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}}
