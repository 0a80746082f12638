"""The generated dashboards: structure Grafana needs, committed JSON up to date, provisioning
files that agree with the code, and the helpers the other Grafana tests rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.dashboards import DASHBOARDS, DEFAULT_EXPORT_DIR, export, rendered, stale_files
from grafana.datasources import DatasourceTargets, datasource_bodies
from grafana.macros import ExpansionError, TimeRange, grafana_sql
from grafana.model import DATASOURCES, GRID_WIDTH, SCHEMA_VERSION
from grafana.promql import exposed_names, metric_names

ROOT = Path(__file__).parents[3]
PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"


def provisioned_datasources() -> list[dict[str, Any]]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "pricewatch.yaml").read_text())
    datasources: list[dict[str, Any]] = config["datasources"]
    return datasources


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, p) for uid, d in rendered().items() for p in d["panels"]]


def test_the_committed_dashboard_json_is_what_the_code_generates() -> None:
    stale = stale_files(DEFAULT_EXPORT_DIR)
    assert not stale, f"stale: {stale}; run `pricewatch grafana export` and commit the files"


def test_stale_files_notices_a_change_a_missing_file_and_a_leftover(tmp_path: Path) -> None:
    export(tmp_path)
    assert stale_files(tmp_path) == []
    admin = tmp_path / "pricewatch-admin.json"
    admin.write_text(admin.read_text().replace("Throughput", "Thruput"))
    (tmp_path / "pricewatch-user.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    assert stale_files(tmp_path) == ["pricewatch-admin.json", "pricewatch-user.json", "old.json"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_structure(dashboard: Any) -> None:
    data = json.loads((DEFAULT_EXPORT_DIR / f"{dashboard.uid}.json").read_text())
    assert data["uid"] == dashboard.uid and len(data["uid"]) <= 40
    assert data["title"] and data["schemaVersion"] == SCHEMA_VERSION
    assert "id" not in data  # Grafana assigns ids; a pushed or provisioned id would clash
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = {d["uid"]: d["type"] for d in provisioned_datasources()}
    occupied: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_WIDTH
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"]
        ref = panel["datasource"]
        assert provisioned.get(ref["uid"]) == ref["type"], f"{panel['title']!r}: {ref}"
        targets = panel["targets"]
        assert targets, f"{panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == ref
            if ref["type"] == "prometheus":
                assert target["expr"].strip()
            else:
                assert target["rawQuery"] is True and target["rawSql"].strip()
                assert target["format"] in ("table", "time_series")
    for variable in data["templating"]["list"]:
        assert provisioned.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]
        assert variable["query"].strip()


def test_every_variable_used_is_declared() -> None:
    for dashboard in DASHBOARDS:
        declared = {v.name for v in dashboard.variables}
        text = json.dumps([p for p in dashboard.render()["panels"]])
        for name in ("user", "product"):
            if f"${name}" in text:
                assert name in declared, f"{dashboard.uid} uses ${name} without declaring it"


def test_panels_are_on_both_datasources_and_the_user_dashboard_is_sql_only() -> None:
    kinds = {(uid, p["datasource"]["uid"]) for uid, p in all_panels() if p["type"] != "row"}
    assert kinds == {
        ("pricewatch-admin", "pricewatch-prometheus"),
        ("pricewatch-admin", "pricewatch-postgres"),
        ("pricewatch-user", "pricewatch-postgres"),
    }


def test_provisioning_files_agree_with_the_code() -> None:
    provisioned = {d["uid"]: d for d in provisioned_datasources()}
    assert set(provisioned) == {d.uid for d in DATASOURCES}
    for body in datasource_bodies(DatasourceTargets()):
        file = provisioned[body["uid"]]
        assert (file["type"], file["name"], file["url"]) == (
            body["type"],
            body["name"],
            body["url"],
        )
    postgres = provisioned["pricewatch-postgres"]
    assert postgres["url"] == "postgres:5432" and postgres["user"] == "pricewatch"
    assert postgres["jsonData"]["database"] == "pricewatch"
    assert provisioned["pricewatch-prometheus"]["url"] == "http://prometheus:9090"

    providers = yaml.safe_load((PROVISIONING / "dashboards" / "pricewatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_promql_expression_names_pricewatch_metrics() -> None:
    for _, panel in all_panels():
        for target in panel.get("targets", []):
            if "expr" in target:
                names = metric_names(target["expr"])
                assert names, target["expr"]
                assert all(n.startswith("pricewatch_") for n in names), (target["expr"], names)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum by (sink) (rate(pricewatch_sink_records_written_total[5m]))",
         {"pricewatch_sink_records_written_total"}),
        ('histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{job="x"}[5m])))',
         {"a_seconds_bucket"}),
        ("sum(rate(a_sum[1m])) / sum(rate(a_count[1m] offset 1h)) > 0.5", {"a_sum", "a_count"}),
        ("sum by (group, topic, partition) (pricewatch_consumer_lag)", {"pricewatch_consumer_lag"}),
    ],
)  # fmt: skip
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exposed_names_reads_samples_and_declared_families() -> None:
    page = "\n".join(
        [
            "# HELP a_total Things.",
            "# TYPE a_total counter",
            "# HELP lag Lag.",
            "# TYPE lag gauge",  # labelled, no sample yet
            "# TYPE h histogram",
            'h_bucket{le="+Inf"} 1.0',
            "h_sum 0.2",
            "h_count 1.0",
            'a_total{kind="x"} 3.0',
            'a_created{kind="x"} 1.7e9',
        ]
    )
    names = exposed_names(page)
    assert {"a_total", "lag", "h", "h_bucket", "h_sum", "h_count", "a_created"} <= names
    assert "kind" not in names


RANGE = TimeRange(
    datetime(2026, 11, 1, 0, 0, tzinfo=UTC), datetime(2026, 11, 25, 16, 50, 33, 120000, tzinfo=UTC)
)


def test_macros_expand_as_grafanas_postgres_datasource_does() -> None:
    sql = (
        "SELECT $__time(t), $__timeGroupAlias(t, '1h') FROM x WHERE $__timeFilter(t)"
        " AND t > $__timeFrom() AND t < $__timeTo() AND $__unixEpochFilter(e)"
    )
    assert grafana_sql(sql, RANGE) == (
        'SELECT t AS "time", floor(extract(epoch from t)/3600)*3600 AS "time" FROM x'
        " WHERE t BETWEEN '2026-11-01T00:00:00Z' AND '2026-11-25T16:50:33.12Z'"
        " AND t > '2026-11-01T00:00:00Z' AND t < '2026-11-25T16:50:33.12Z'"
        " AND e >= 1793491200 AND e <= 1795625433"
    )


def test_template_variables_single_bare_multi_quoted() -> None:
    sql = "WHERE user_id = $user AND product_id IN ($product) AND n = ${user} -- $__interval"
    expanded = grafana_sql(
        sql, RANGE, {"user": "7", "product": ["a", "o'b"]}, multi=frozenset({"product"})
    )
    assert expanded == "WHERE user_id = 7 AND product_id IN ('a','o''b') AND n = 7 -- 60s"
    one = grafana_sql("IN ($product)", RANGE, {"product": "a"}, multi=frozenset({"product"}))
    assert one == "IN ('a')"


def test_unknown_variables_and_macros_are_errors() -> None:
    with pytest.raises(ExpansionError, match="undefined template variable"):
        grafana_sql("WHERE id = $nobody", RANGE)
    with pytest.raises(ExpansionError, match="undefined macro"):
        grafana_sql("WHERE $__nonsense(x)", RANGE)
    with pytest.raises(ValueError):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))  # naive
    assert timedelta(0) < RANGE.end - RANGE.start


def test_cli_export_writes_every_dashboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from launcher.cli import main

    main(["grafana", "export", "--out", str(tmp_path)])
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(f"{d.uid}.json" for d in DASHBOARDS)
    assert stale_files(tmp_path) == []
