"""deploy/prometheus: the alerting rules are valid (``promtool check rules``), pass their
unit tests (``promtool test rules`` on alerts_test.yml), every alert is tested firing and
the tests do catch a wrong expectation; the Prometheus of each Compose file (one node,
the three-node topology) loads the rules from where it mounts them (``promtool check
config``)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.deploy.promql_support import ALERT_TESTS, ALERTS, DEPLOY, alert_rules, metric_names
from tests.node.runtime.observed_support import run_promtool

DEPLOYMENTS = {  # compose file: the scrape configuration its Prometheus mounts
    DEPLOY / "compose.yaml": DEPLOY / "prometheus.yml",
    DEPLOY / "topology" / "compose.yaml": DEPLOY / "topology" / "prometheus.yml",
}
CONTAINER_CONFIG = PurePosixPath("/etc/prometheus/prometheus.yml")  # prom/prometheus reads it


def test_metric_names_reads_promql() -> None:
    expr = (
        'sum by (job, le) (rate(idnode_x_bucket{le="0.1", a=~"b|c"}[5m] offset 1h)) '
        "/ on (job) group_left (x) idnode_y > 14 * 86400 and 1e3 < bool idnode_z unless up"
    )
    assert metric_names(expr) == {"idnode_x_bucket", "idnode_y", "idnode_z", "up"}
    grafana = 'histogram_quantile(0.99, sum(rate(a_b{i=~"$instance"}[$__rate_interval])) by (le))'
    assert metric_names(grafana) == {"a_b"}


def test_the_rules_are_valid() -> None:
    out = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out
    for rule in alert_rules():
        assert rule["alert"].startswith("Idnode")
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_rules_pass_their_unit_tests() -> None:
    out = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert "SUCCESS" in out


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [ALERTS.name]
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_the_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """promtool test rules does fail when an alert does not fire as expected."""
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    broken = copy.deepcopy(tests)
    case = broken["tests"][0]["alert_rule_test"][1]  # IdnodeDown firing at 5m
    case["exp_alerts"][0]["exp_labels"]["instance"] = "ok:9100"
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    (tmp_path / "broken_test.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    with pytest.raises(AssertionError, match="IdnodeDown"):
        run_promtool("test", "rules", "broken_test.yml", cwd=tmp_path)


def test_alerts_name_only_node_metrics_or_prometheus_own() -> None:
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            assert name.startswith(("idnode_", "process_")) or name == "up", (rule["alert"], name)


@pytest.mark.parametrize("compose_file", list(DEPLOYMENTS), ids=["single", "topology"])
def test_compose_prometheus_loads_the_rules(compose_file: Path, tmp_path: Path) -> None:
    """The rule files prometheus.yml names are where compose.yaml mounts alerts.yml, and
    promtool accepts the configuration with them, laid out as the container sees it."""
    scrape_config = DEPLOYMENTS[compose_file]
    config = yaml.safe_load(scrape_config.read_text(encoding="utf-8"))
    compose = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    mounts = {}
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[PurePosixPath(target)] = (compose_file.parent / source).resolve()
    assert mounts[CONTAINER_CONFIG] == scrape_config.resolve()
    loaded = []
    for rule_file in config["rule_files"]:
        in_container = CONTAINER_CONFIG.parent / rule_file
        host = next(
            source / in_container.relative_to(target)
            for target, source in mounts.items()
            if in_container.is_relative_to(target)
        )
        loaded.append(host.resolve())
    assert loaded == [ALERTS.resolve()]
    container = tmp_path / "etc-prometheus"  # /etc/prometheus, as mounted
    container.mkdir()
    shutil.copy(scrape_config, container / CONTAINER_CONFIG.name)
    for rule_file, host_file in zip(config["rule_files"], loaded, strict=True):
        (container / rule_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(host_file, container / rule_file)
    out = run_promtool("check", "config", str(container / CONTAINER_CONFIG.name))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out
