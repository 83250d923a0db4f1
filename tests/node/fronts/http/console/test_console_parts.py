"""The console's pieces that need no node: the language choice, the charts' quantiles
and SVG, and every word in both languages (the sessions: test_console_sessions.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from node.fronts.http.console import i18n
from node.fronts.http.console.charts import Sampler, line_chart, quantile
from node.runtime.metrics import NodeMetrics
from tests.node.http_support import SteppedClock


def test_language_choice() -> None:
    assert i18n.choose({}, "", None) == "zh"
    assert i18n.choose({}, "en-US,en;q=0.9", None) == "en"
    assert i18n.choose({}, "zh-CN,zh;q=0.9,en;q=0.8", None) == "zh"
    assert i18n.choose({}, "en;q=0.5,zh;q=0.9", None) == "zh"
    assert i18n.choose({"lang": "en"}, "zh-CN", None) == "en"
    assert i18n.choose({}, "zh-CN", "en") == "en"  # the session's choice
    assert i18n.choose({"lang": "fr"}, "", None) == "zh"


def test_every_word_in_both_languages() -> None:
    for key, (zh, en) in i18n.WORDS.items():
        assert zh.strip() and en.strip(), key
        assert i18n.tr("zh", key) == zh and i18n.tr("en", key) == en


def test_quantile_between_two_readings() -> None:
    before = [(0.001, 0.0), (0.01, 0.0), (0.1, 0.0), (float("inf"), 0.0)]
    after = [(0.001, 10.0), (0.01, 90.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, before, after) == 0.001 + (0.01 - 0.001) * (50 - 10) / 80
    p99 = quantile(0.99, before, after)
    assert p99 is not None and 0.01 < p99 <= 0.1
    assert quantile(0.5, after, after) is None  # nothing observed in between


def test_sampler_reads_the_node_metrics() -> None:
    metrics = NodeMetrics(CollectorRegistry(), "test", "secondary")
    clock = SteppedClock()
    sampler = Sampler(metrics.registry, interval_s=5, keep=3, clock=clock)
    sampler.take()
    for _ in range(8):
        metrics.count_request("http", "resolution", "1")
        metrics.time_request("http", "resolution", 0.004)
    metrics.count_request("http", "resolution", "3")
    metrics.count_request("native", "resolution", "2")
    clock.advance(5)
    sampler.take()
    (s,) = sampler.samples
    assert s.qps == 10 / 5 and s.errors_per_s == 2 / 5
    assert s.p50_ms is not None and 0 < s.p50_ms <= 5
    for _ in range(5):
        clock.advance(5)
        sampler.take()
    assert len(sampler.samples) == 3  # the ring keeps the latest


def test_chart_svg_has_lines_and_gaps() -> None:
    svg = line_chart([("p50", [1.0, None, 3.0, 4.0]), ("p99", [2.0, 2.0, 8.0, 9.0])])
    assert svg.startswith("<svg") and svg.count("<path") == 2
    first = svg.split('<path d="')[1].split('"')[0]
    assert first.count("M") == 2  # the None is a gap: the line starts again
    assert "<script" not in line_chart([("<script>", [1.0])])
