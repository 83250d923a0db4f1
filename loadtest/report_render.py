"""The performance report as files: PNG plots (matplotlib, Agg: no display needed) and
one self-contained HTML page that shows them from the same directory.

Every plot is 800x450 pixels (8x4.5 in at 100 dpi), written as a 64-colour PNG
(Pillow, which matplotlib depends on), so a committed copy (docs/perf/) stays well
under 60 KB.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, whatever DISPLAY says

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image

from loadtest.benchtable import Row
from loadtest.report_data import GrowthPoint, ReportData
from loadtest.sweep import SweepPoint

SIZE_IN, DPI = (8.0, 4.5), 100
THROUGHPUT_PNG, LATENCY_PNG, GROWTH_PNG = "sweep_throughput.png", "sweep_latency.png", "growth.png"
FRONT_TITLE = {"udp": "native UDP, cache hits", "http": "HTTP GET, cache hits"}
LOAD_LABEL = {"udp": "requests in flight (udpload window)", "http": "connections (wrk -c)"}
FRONT_STYLE = {"udp": ("tab:blue", "o"), "http": ("tab:orange", "s")}
MiB = 1 << 20
FLOOR_FRONT = "http-floor"  # loadtest.growth: miss_http's floor, one asyncpg read per GET
GROWTH_SERIES = {  # front: (legend, colour, marker, line style)
    "udp": ("native UDP", "tab:blue", "o", "-"),
    "http": ("HTTP GET", "tab:orange", "s", "-"),
    FLOOR_FRONT: ("HTTP floor: 1 pg read per GET", "gray", "^", "--"),
}


def _save(fig: Figure, path: Path) -> Path:
    """PNG with a 64-colour palette: line plots need no more, and it is a third the size."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=64).save(path, format="PNG", optimize=True)
    return path


def _kilo(value: float, _pos: object = None) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _fronts(points: Sequence[SweepPoint]) -> list[str]:
    return [f for f in ("udp", "http") if any(p.front == f for p in points)]


def _log2_axis(ax: Axes, loads: Iterable[int]) -> None:
    ticks = sorted(set(loads))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _p: ""))


def plot_throughput(points: Sequence[SweepPoint], path: Path, stamp: str) -> Path:
    fronts = _fronts(points)
    fig, axes = plt.subplots(1, len(fronts), figsize=SIZE_IN, squeeze=False)
    for ax, front in zip(axes[0], fronts, strict=True):
        mine = sorted((p for p in points if p.front == front), key=lambda p: p.load)
        colour, marker = FRONT_STYLE[front]
        ax.plot([p.load for p in mine], [p.rate for p in mine], marker=marker, color=colour)
        _log2_axis(ax, (p.load for p in mine))
        ax.yaxis.set_major_formatter(FuncFormatter(_kilo))
        ax.set_ylim(bottom=0)
        ax.set_title(FRONT_TITLE[front], fontsize=10)
        ax.set_xlabel(LOAD_LABEL[front], fontsize=9)
        ax.set_ylabel("replies per second", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Throughput against offered load ({stamp})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_latency(points: Sequence[SweepPoint], path: Path, stamp: str) -> Path:
    fronts = _fronts(points)
    fig, axes = plt.subplots(1, len(fronts), figsize=SIZE_IN, squeeze=False)
    for ax, front in zip(axes[0], fronts, strict=True):
        mine = sorted((p for p in points if p.front == front), key=lambda p: p.load)
        loads = [p.load for p in mine]
        ax.plot(loads, [p.p50_ms for p in mine], marker="o", label="p50", color="tab:green")
        if any(p.p90_ms is not None for p in mine):
            p90 = [p.p90_ms if p.p90_ms is not None else math.nan for p in mine]
            ax.plot(loads, p90, marker="^", label="p90", color="tab:orange")
        ax.plot(loads, [p.p99_ms for p in mine], marker="s", label="p99", color="tab:red")
        _log2_axis(ax, loads)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.set_title(FRONT_TITLE[front], fontsize=10)
        ax.set_xlabel(LOAD_LABEL[front], fontsize=9)
        ax.set_ylabel("latency, ms (log)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Latency percentiles against offered load ({stamp})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _ident(value: float, _pos: object = None) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def plot_growth(points: Sequence[GrowthPoint], path: Path, stamp: str) -> Path:
    """Miss-path throughput and p99 against identifiers registered (log x), with the
    goal band: within 20% of the 1M figure of the same front."""
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE_IN)
    for front, (name, colour, marker, line) in GROWTH_SERIES.items():
        mine = sorted((p for p in points if p.front == front), key=lambda p: p.identifiers)
        if not mine:
            continue
        xs = [p.identifiers for p in mine]
        style = {"marker": marker, "color": colour, "linestyle": line, "label": name}
        left.plot(xs, [p.rate for p in mine], **style)
        right.plot(xs, [p.p99_ms for p in mine], **style)
        ref = next((p for p in mine if p.identifiers == 1_000_000), None)
        if ref is not None and front != FLOOR_FRONT:
            left.axhline(0.8 * ref.rate, color=colour, linestyle=":", linewidth=1)
            right.axhline(1.2 * ref.p99_ms, color=colour, linestyle=":", linewidth=1)
        if front == "udp":
            for p in mine:
                hits = "" if p.idx_hit_ratio is None else f", {100 * p.idx_hit_ratio:.0f}% hits"
                left.annotate(
                    f"index {p.index_bytes / MiB:.0f} MiB{hits}",
                    (p.identifiers, p.rate),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=7,
                    color="dimgray",
                )
    for ax, what in ((left, "miss path, replies per second"), (right, "miss path p99, ms")):
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room for the labels above the points
        ax.set_xscale("log")
        ax.margins(x=0.2)
        ax.xaxis.set_major_formatter(FuncFormatter(_ident))
        ax.set_xlabel("identifiers registered (log)", fontsize=9)
        ax.set_ylabel(what, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    left.yaxis.set_major_formatter(FuncFormatter(_kilo))
    fig.suptitle(
        f"Growth: the miss path by registry size; dotted: 1M ±20% ({stamp})\n"
        "labels: index size, share of its blocks found in shared_buffers",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


# -- HTML ----------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
td.l, th.l { text-align: left; }
td.ok { color: #060; } td.miss { color: #a00; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; }
code, pre { background: #f6f6f6; } pre { padding: 0.5em; overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
"""


def _f(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _bench_table(rows: Sequence[Row]) -> str:
    head = (
        "<tr><th class=l>benchmark</th><th class=l>target</th><th>per s</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>ratio</th><th class=l>of</th><th class=l>goal</th><th></th>"
        "<th class=l>detail</th></tr>"
    )
    body = []
    for r in rows:
        verdict = "" if r.ok is None else ("ok" if r.ok else "MISS")
        cls = "" if r.ok is None else ("ok" if r.ok else "miss")
        body.append(
            f"<tr><td class=l>{_e(r.bench)}</td><td class=l>{_e(r.target)}</td>"
            f"<td>{_f(r.rate, '.0f')}</td><td>{_f(r.p50_ms, '.2f')}</td><td>{_f(r.p99_ms, '.2f')}</td>"
            f"<td>{_f(r.ratio, '.2f')}</td><td class=l>{_e(r.ratio_of)}</td><td class=l>{_e(r.goal)}</td>"
            f"<td class={cls}>{verdict}</td><td class=l>{_e(r.detail)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _sweep_table(points: Sequence[SweepPoint]) -> str:
    head = (
        "<tr><th class=l>front</th><th>load</th><th>per s</th><th>p50 ms</th><th>p90 ms</th>"
        "<th>p99 ms</th><th class=l>detail</th></tr>"
    )
    body = "".join(
        f"<tr><td class=l>{_e(p.front)}</td><td>{p.load}</td><td>{p.rate:.0f}</td>"
        f"<td>{p.p50_ms:.2f}</td><td>{_f(p.p90_ms, '.2f')}</td><td>{p.p99_ms:.2f}</td>"
        f"<td class=l>{_e(p.detail)}</td></tr>"
        for p in points
    )
    return f"<table>{head}{body}</table>"


def _growth_table(points: Sequence[GrowthPoint]) -> str:
    head = (
        "<tr><th class=l>front</th><th>identifiers</th><th>per s</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>rate / 1M</th><th>p99 / 1M</th><th>within 20%</th>"
        "<th>table MiB</th><th>indexes MiB</th><th>pkey MiB</th><th>shared_buffers hits heap</th>"
        "<th>index</th><th>load rows/s</th><th class=l>measured</th></tr>"
    )
    body = []
    for p in points:
        within = ""
        if p.identifiers != 1_000_000 and p.rate_vs_1m is not None and p.p99_vs_1m is not None:
            ok = p.rate_vs_1m >= 0.8 and p.p99_vs_1m <= 1.2
            within = f"<span class={'ok' if ok else 'miss'}>{'ok' if ok else 'MISS'}</span>"
        body.append(
            f"<tr><td class=l>{_e(p.front)}</td><td>{_ident(p.identifiers)}</td>"
            f"<td>{p.rate:.0f}</td><td>{_f(p.p50_ms, '.2f')}</td><td>{p.p99_ms:.2f}</td>"
            f"<td>{_f(p.rate_vs_1m, '.2f')}</td><td>{_f(p.p99_vs_1m, '.2f')}</td><td>{within}</td>"
            f"<td>{p.heap_bytes / MiB:.0f}</td><td>{p.index_bytes / MiB:.0f}</td>"
            f"<td>{p.pkey_bytes / MiB:.0f}</td>"
            f"<td>{_f(None if p.heap_hit_ratio is None else 100 * p.heap_hit_ratio, '.0f')}%</td>"
            f"<td>{_f(None if p.idx_hit_ratio is None else 100 * p.idx_hit_ratio, '.0f')}%</td>"
            f"<td>{_f(p.load_rows_per_s, '.0f')}</td><td class=l>{_e(p.run_at)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def render(data: ReportData, out_dir: Path) -> tuple[Path, list[Path]]:
    """Write the PNGs and index.html into ``out_dir``; (the page, the PNGs written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>idnode performance report {_e(data.generated)}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>idnode performance report</h1><p>Generated {_e(data.generated)} on "
        f"{_e(data.machine)}.</p>",
        "<p class=note>Regenerate: <code>python -m loadtest.report</code> (quick set, load "
        "sweep, and the growth curve from the last <code>python -m loadtest.growth</code>). "
        "Absolute rates depend on the machine and what else runs on it; ratios measured in "
        "one run (node against floor, step against 1M) hold better.</p>",
    ]
    parts += [f"<p class=miss>Not run: {_e(problem)}</p>" for problem in data.problems]

    parts.append("<h2>Quick set: <code>cache_bench --quick</code></h2>")
    if data.bench_rows:
        parts.append(f"<p class=note>Run {_e(data.bench_run_at)}.</p>")
        parts.append(_bench_table(data.bench_rows))
        if data.bench_notes:
            notes = "\n".join(data.bench_notes)
            parts.append(f"<pre>{_e(notes)}</pre>")
    else:
        parts.append("<p>No cache_bench rows.</p>")

    parts.append("<h2>Load sweep: throughput and latency against offered load</h2>")
    if data.sweep:
        stamp = data.sweep_run_at[:16].replace("T", " ")
        pngs.append(plot_throughput(data.sweep, out_dir / THROUGHPUT_PNG, stamp))
        pngs.append(plot_latency(data.sweep, out_dir / LATENCY_PNG, stamp))
        parts.append(
            f"<p class=note>Run {_e(data.sweep_run_at)}. Closed loops: load is offered as "
            "concurrency. Below the knee throughput grows with concurrency at flat latency; "
            "past it throughput stays and latency grows as concurrency / throughput. udpload "
            "reports p50 and p99 only.</p>"
            f'<p><img src="{THROUGHPUT_PNG}" alt="throughput against load"></p>'
            f'<p><img src="{LATENCY_PNG}" alt="latency percentiles against load"></p>'
        )
        parts.append(_sweep_table(data.sweep))
    else:
        parts.append("<p>No sweep points.</p>")

    parts.append("<h2>Growth: the miss path with 100k, 1M and 10M identifiers</h2>")
    if data.growth:
        stamp = max(p.run_at for p in data.growth)[:10]
        pngs.append(plot_growth(data.growth, out_dir / GROWTH_PNG, stamp))
        parts.append(
            f'<p><img src="{GROWTH_PNG}" alt="miss path by registry size"></p>'
            "<p class=note>Each step is its own registry holding exactly that many rolls; "
            "every request asks for a roll not asked before, so each is a primary-key "
            "lookup and a heap fetch. Goal: throughput at least 0.8x and p99 at most 1.2x "
            "the 1M figure. Hits are the share of <code>handles</code> blocks found in "
            "shared_buffers during the run; the others came from the kernel's page cache "
            "or the disk. The newest figure per step is shown (column <em>measured</em>).</p>"
        )
        parts.append(_growth_table(data.growth))
    else:
        parts.append(
            "<p>No growth run yet: <code>nice -n 10 python -m loadtest.growth --load-only</code> "
            "(once; the 10M load takes a while), then <code>python -m loadtest.growth</code>.</p>"
        )
    parts.append("</body></html>\n")
    page = out_dir / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page, pngs
