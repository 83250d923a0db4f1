"""Every metric the dashboard and the alerting rules query exists in a real node's
``/metrics``: a renamed or dropped metric breaks this test, not a panel nobody looks at
until the night it is needed."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.promql_support import (
    SYNTHETIC,
    alert_rules,
    dashboard_exprs,
    dashboards,
    metric_names,
)
from tests.node.runtime.observed_support import exposed_names, observed_node, scrape


def queried() -> dict[str, set[str]]:
    """Metric name -> where it is queried."""
    out: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            out.setdefault(name, set()).add(f"alerts.yml {rule['alert']}")
    for file, dashboard in dashboards().items():
        for expr in dashboard_exprs(dashboard):
            for name in metric_names(expr):
                out.setdefault(name, set()).add(f"grafana/dashboards/{file}")
    return out


def test_exposed_names_knows_families_without_samples() -> None:
    text = (
        "# HELP idnode_a_total A\n# TYPE idnode_a_total counter\n"
        "# HELP idnode_b B\n# TYPE idnode_b histogram\n"
        'idnode_c{x="1"} 2.0\n'
    )
    names = exposed_names(text)
    assert {"idnode_a_total", "idnode_b_bucket", "idnode_b_count", "idnode_c"} <= names
    assert "idnode_a" not in names


async def test_every_queried_metric_exists(database_url: str, tmp_path: Path) -> None:
    wanted = queried()
    assert len(wanted) > 30
    async with observed_node(database_url, tmp_path / "node") as (node, _):
        exposed = exposed_names(await scrape(node))
    missing = {
        name: sorted(where)
        for name, where in wanted.items()
        if name not in exposed and name not in SYNTHETIC
    }
    assert not missing, f"queried but not in /metrics: {missing}"
