"""deploy/grafana: the provisioned datasource and dashboard provider, the dashboard JSON
(well formed, every query valid PromQL for promtool), and the Compose service that
mounts them where the provisioning files say."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.deploy.promql_support import (
    DASHBOARDS,
    DEPLOY,
    GRAFANA,
    dashboard_exprs,
    dashboards,
    panels,
)
from tests.node.runtime.observed_support import run_promtool

COMPOSE = DEPLOY / "compose.yaml"
PROVISIONING = GRAFANA / "provisioning"
GRAFANA_PROVISIONING_DIR = PurePosixPath("/etc/grafana/provisioning")  # the image's default
# What the dashboard's template variables stand for, for checking the queries.
VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$instance": ".*"}


def datasource() -> dict[str, Any]:
    data = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    [source] = data["datasources"]
    return dict(source)


def provider() -> dict[str, Any]:
    data = yaml.safe_load((PROVISIONING / "dashboards" / "idnode.yml").read_text(encoding="utf-8"))
    [found] = data["providers"]
    return dict(found)


def grafana_mounts() -> dict[PurePosixPath, Path]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    out = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        out[PurePosixPath(target)] = (COMPOSE.parent / source).resolve()
    return out


def test_the_datasource_is_the_compose_prometheus() -> None:
    source = datasource()
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://prometheus:9090"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]


def test_compose_mounts_the_provisioning_and_the_dashboards() -> None:
    mounts = grafana_mounts()
    assert mounts[GRAFANA_PROVISIONING_DIR] == PROVISIONING.resolve()
    assert mounts[PurePosixPath(provider()["options"]["path"])] == DASHBOARDS.resolve()
    assert provider()["type"] == "file"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"], "the dashboard stays on loopback"
    assert "prometheus" in grafana["depends_on"]


def test_the_dashboard_is_well_formed() -> None:
    found = dashboards()
    assert list(found) == ["idnode.json"]
    dashboard = found["idnode.json"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    uid = datasource()["uid"]
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"job", "instance"} <= names


def test_the_dashboard_shows_what_operators_ask() -> None:
    exprs = "\n".join(dashboard_exprs(dashboards()["idnode.json"]))
    for needed in (
        "idnode_requests_total",  # QPS by front, errors
        "idnode_cache_hits_total",  # hit ratio
        "idnode_request_seconds_bucket",  # p50 / p99
        "idnode_registry_pool_connections",
        "idnode_registry_query_seconds_bucket",
        "idnode_upstream_exchange_seconds",
        "idnode_docking_outbox_depth",
        "idnode_prefix_identifiers",
    ):
        assert needed in exprs, needed


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), with the template variables
    replaced by values Grafana would put there."""
    rules = []
    for n, expr in enumerate(dashboard_exprs(dashboards()["idnode.json"])):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"an unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(path))
