"""A kept benchmark dataset belongs to one benchmark at a time (loadtest.harness
hold_lock): a second one started on it is refused, naming the first, instead of running
and then stopping the first one's PostgreSQL when it ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadtest.bulkload import BenchDataset
from loadtest.harness import BenchError


def test_a_second_benchmark_on_a_dataset_is_refused_and_leaves_it_alone(tmp_path: Path) -> None:
    first = BenchDataset(tmp_path / "bench-pg")
    first._take()
    second = BenchDataset(tmp_path / "bench-pg")
    with pytest.raises(BenchError, match=f"in use by another benchmark \\(pid {os.getpid()}\\)"):
        second.start(rolls=1, fields=1)
    second.stop()  # its cleanup: the server is not its own to stop
    assert not (tmp_path / "bench-pg" / "data").exists()  # nothing was started or created
    with pytest.raises(BenchError):
        BenchDataset(tmp_path / "bench-pg").start(rolls=1, fields=1)  # still held
    first.stop()
    third = BenchDataset(tmp_path / "bench-pg")
    third._take()  # released with the first's stop
    third.stop()
