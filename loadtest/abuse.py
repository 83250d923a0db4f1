"""How a real ``idnode serve --demo`` process holds up under abuse: a polite client's
success rate and latency with and without each attack running, measured in one run, and
the UDP amplification factor per request kind. Prints two tables; appends their rows to
loadtest/out/abuse.csv.

    .venv/bin/python -m loadtest.abuse [--seconds 4] [--attacks misses,cert,...]
        [--scale 1] [--rolls 20000] [--database-url URL]

What runs: a throwaway embedded PostgreSQL (or ``--database-url``: the node adds the demo
data it lacks; the run adds rolls, 88.118.2/ABUSE-* handles and leaves them), the node with
``rate_limit_exempt_networks`` empty (loadtest/abuse_stage.py: the stage it sets), and
from this process, one after another for each attack:

1. the polite client (loadtest/polite.py) on 127.0.0.1 for ``--seconds``: cached and
   uncached records over native UDP, TCP and HTTP, a two-datagram UDP request and an HTTP
   session kept pending, one probe every 10 ms; success = a right answer within 100 ms;
2. the attack (loadtest/attacks.py) from 127.0.1.2, in processes of its own (niced, so
   on a small machine the node keeps its core), at its default strength times
   ``--scale``; once at full strength, the polite client again for ``--seconds``;
3. the attack stopped, the polite client waits for the node to answer again before the
   next one (a node that does not recover is a note, and exit status 1).

For password guessing the polite client logs in instead, as another admin than the one
the guesses aim at (an admin whose secret is stored hashed, ~0.3 s a check), every
0.5 s; success = authenticated within 2 s. Then each amplification request, sent on its
own from 127.0.1.2: the bytes of every datagram that comes back, over the request's.

Reading the tables:

- **ok** is the share of the polite client's probes that succeeded in time; the goal is
  0.99 under every attack. *p50/p99* are over all its probes, failures counted at the
  time they gave up (500 ms). *detail*: what failed, by probe kind, and what the
  attacker sent and got back.
- Every figure is of this machine at the time: the header says how busy it was before
  the run. With other work on the cores, the node answers late with or without attack.
- **amplification**: the factor and its bound, (udp_max_reply_bytes + 20) / request
  bytes: a node may send a spoofed source one capped reply per request, never more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest import amplification
from loadtest.abuse_stage import (
    ATTACKS,
    DEMO_ROLL,
    LARGEST,
    MISSING,
    NODE_ENV,
    ROLLS,
    Stage,
    set_stage,
)
from loadtest.amplification import Amplified
from loadtest.attacks import AttackError, Counts, Target
from loadtest.benchtable import Row, append_csv, format_table
from loadtest.harness import OUT, BenchError, machine_busy, run_bench, start_idnode
from loadtest.polite import DEADLINE_S, KINDS, LOGIN, LOGIN_DEADLINE_S, Politeness, ProbeFailed
from loadtest.rolls import embedded_registry
from node.settings import Settings

CSV_PATH = OUT / "abuse.csv"
GOAL = 0.99
LOGIN_INTERVAL_S = 0.5
RECOVERY_S = 30.0


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="polite measurement, each")
    p.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"comma-separated, of {','.join(ATTACKS)}",
    )
    p.add_argument("--rolls", type=int, default=ROLLS, help="bulk-loaded rolls (uncached reads)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="attack strength: rates and connections times this (loadtest/attacks.py defaults)",
    )
    p.add_argument("--samples", type=int, default=3, help="amplification requests per kind")
    p.add_argument("--database-url", help="an existing registry instead of a throwaway one")
    args = p.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attacks {sorted(unknown)}; known: {','.join(ATTACKS)}")
    if args.seconds <= 0 or args.rolls < 100 or args.samples < 1 or args.scale <= 0:
        p.error("--seconds > 0, --rolls >= 100, --samples >= 1, --scale > 0")
    return args


@dataclass
class Report:
    run_at: str
    busy_before: float
    attack_rows: list[Row] = field(default_factory=list)
    amplification_rows: list[Amplified] = field(default_factory=list)
    max_reply_bytes: int = field(default_factory=lambda: Settings().udp_max_reply_bytes)
    attackers: dict[str, Counts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = (
            f"# {self.run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  "
            f"busy before start={100 * self.busy_before:.0f}% of all CPUs"
        )
        out = [head, *format_table(self.attack_rows), ""]
        out += amplification_table(self.amplification_rows, self.max_reply_bytes)
        return out + [f"# {note}" for note in self.notes]

    def rows(self) -> list[Row]:
        """Every figure as a benchtable row (the CSV's shape)."""
        return self.attack_rows + [
            Row(
                "amplification",
                a.kind,
                ratio=a.factor,
                ratio_of="bytes",
                goal=f"<={amplification.bound(self.max_reply_bytes, a.request_bytes):.1f}",
                ok=a.factor <= amplification.bound(self.max_reply_bytes, a.request_bytes),
                detail=f"{a.request_bytes} B in, {a.reply_bytes} B out, {a.datagrams} datagrams",
            )
            for a in self.amplification_rows
        ]


def polite_row(
    attack: str, target: str, m: Politeness, detail: str = "", *, within: str = "<100ms"
) -> Row:
    """``within``: what counts as a success for this client (a login has 2 s)."""
    ok = m.share_ok()
    failed = ", ".join(f"{what} x{n}" for what, n in m.failures().most_common(3))
    return Row(
        attack,
        target,
        len(m.probes) / max(m.seconds, 1e-9),
        m.percentile_ms(0.5),
        m.p99_ms(),
        ok,
        within,  # the share of probes that succeeded in time
        f">={GOAL}",
        ok >= GOAL,
        "; ".join(part for part in (failed, detail) if part),
    )


def measure_attack(
    stage: Stage, name: str, args: argparse.Namespace
) -> tuple[list[Row], Counts | None, str]:
    """The polite client without, then with the attack: its two rows, what the attacker
    did, and a note when something went wrong."""
    login = name == "passwords"
    client = stage.polite(
        kinds=(LOGIN,) if login else KINDS, interval_s=LOGIN_INTERVAL_S if login else 0.01
    )
    try:
        client.warm()
    except ProbeFailed as exc:
        raise BenchError(
            f"before {name}: the node does not answer the polite client: {exc}"
        ) from None
    what = "polite login" if login else "polite"
    within = f"<{(LOGIN_DEADLINE_S if login else DEADLINE_S) * 1000:.0f}ms"
    progress(f"{name}: {what}, no attack, {args.seconds:g} s")
    baseline = client.measure(args.seconds)
    attack = stage.attack(name).scale(args.scale)
    with attack:
        try:
            attack.wait_engaged()
        except AttackError as exc:
            return [], None, f"WARNING: {exc}"
        progress(f"{name}: {attack.name} at full strength; {what} for {args.seconds:g} s")
        during = client.measure(args.seconds)
    counts = attack.counts
    assert counts is not None
    rows = [
        polite_row(name, f"{what}, no attack", baseline, within=within),
        polite_row(
            name, f"{what}, under attack", during, f"attacker {counts.summary()}", within=within
        ),
    ]
    try:
        client.warm(timeout_s=RECOVERY_S)
    except ProbeFailed as exc:
        return rows, counts, f"WARNING: no answer {RECOVERY_S:g} s after {name}: {exc}"
    return rows, counts, ""


def amplification_rows(port: int, samples: int) -> list[Amplified]:
    rows = []
    for kind, request in amplification.request_kinds(DEMO_ROLL, LARGEST, MISSING).items():
        progress(f"amplification: {kind}")
        rows.append(amplification.measure("127.0.0.1", port, kind, request, samples=samples))
    return rows


_AMP_HEAD = (
    f"{'amplification':<34}{'request B':>10}{'reply B':>10}{'datagrams':>10}"
    f"{'factor':>9}  {'goal':<9}"
)


def amplification_table(rows: list[Amplified], cap: int) -> list[str]:
    out = [_AMP_HEAD, "-" * len(_AMP_HEAD)]
    for a in rows:
        most = amplification.bound(cap, a.request_bytes)
        verdict = "ok" if a.factor <= most else "MISS"
        out.append(
            f"{a.kind:<34}{a.request_bytes:>10}{a.reply_bytes:>10}{a.datagrams:>10}"
            f"{a.factor:>9.1f}  {'<=' + format(most, '.1f'):<9}{verdict}"
        )
    return out


def abuse_report(args: argparse.Namespace, stack: ExitStack) -> Report:
    OUT.mkdir(parents=True, exist_ok=True)
    report = Report(datetime.now(UTC).isoformat(timespec="seconds"), machine_busy())
    if args.database_url:
        dsn = args.database_url
    else:
        progress("starting embedded PostgreSQL ...")
        dsn = stack.enter_context(embedded_registry()).dsn
    node_dir = Path(tempfile.mkdtemp(prefix="idnode-bench-abuse-"))
    stack.callback(shutil.rmtree, node_dir, ignore_errors=True)
    progress("starting idnode serve --demo ...")
    node = start_idnode(dsn, node_dir, name="abuse_node", extra_args=["--demo"], extra_env=NODE_ENV)
    stack.callback(node.stop)
    target = Target("127.0.0.1", node.handle_port, node.http_port)
    progress(f"node pid {node.pid}: native {node.handle_port}, http {node.http_port}; staging ...")
    guards = 2 + 2 * int(args.seconds / LOGIN_INTERVAL_S + 2)  # a login each, no repeats
    stage = asyncio.run(set_stage(dsn, target, rolls=args.rolls, guards=guards))

    for name in args.attacks:
        rows, counts, note = measure_attack(stage, name, args)
        report.attack_rows += rows
        if counts is not None:
            report.attackers[name] = counts
        if note:
            report.notes.append(note)
    report.amplification_rows = amplification_rows(node.handle_port, args.samples)
    node.stop()
    return report


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    report = abuse_report(args, stack)
    print()
    for line in report.lines():
        print(line)
    settings = (
        f"seconds={args.seconds:g} scale={args.scale:g} rolls={args.rolls} "
        f"attacks={','.join(args.attacks)}"
    )
    append_csv(CSV_PATH, report.run_at, settings, report.rows())
    missed = any(r.ok is False for r in report.rows())
    return 1 if missed or any(n.startswith("WARNING") for n in report.notes) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("abuse", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
