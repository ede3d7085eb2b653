"""harness.load.units: endless unique units from a finite workload, and the ledger of submitted units."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.load.units import UnitLedger, UnitSource, read_units
from harness.workload import Unit
from sample_system import Settings
from sample_system.workload import SampleWorkload


class TwoKinds:
    """A minimal workload: effects derive from the key, like a real one's."""

    kinds = ("a", "b")

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def units(self, n: int, run_id: str) -> list[Unit]:
        self.calls.append((n, run_id))
        return [Unit(f"{run_id}:{k}:{i}", k, "complete" if k == "a" else "dlq", (f"fx:{run_id}:{k}:{i}",), run_id)
                for k in self.kinds for i in range(n)]


def test_units_are_unique_across_batches_and_processes_and_carry_the_run_id() -> None:
    w = TwoKinds()
    first, second = UnitSource(w, "r1", batch_per_kind=3, token="p1"), UnitSource(w, "r1", batch_per_kind=3, token="p2")
    keys = [first.next().key for _ in range(20)] + [second.next().key for _ in range(20)]
    assert len(set(keys)) == 40
    assert all(k.startswith("r1-") for k in keys)
    assert first.issued_batches == 4                    # 6 units a batch
    assert all(run_id.startswith("r1-p1-") or run_id.startswith("r1-p2-") for _, run_id in w.calls)
    u = first.next()
    assert u.run_id == "r1" and u.effects == (f"fx:{u.key}",)   # effects follow the key, the run id is the run's


def test_kinds_interleave_and_can_be_restricted() -> None:
    src = UnitSource(TwoKinds(), "r1", batch_per_kind=2, token="t")
    assert [src.next().kind for _ in range(4)] == ["a", "b", "a", "b"]
    only_b = UnitSource(TwoKinds(), "r1", kinds=("b",), token="t")
    assert {only_b.next().kind for _ in range(5)} == {"b"}


def test_bad_sources_fail_when_built_or_at_the_first_batch() -> None:
    with pytest.raises(ConfigError, match=r"unknown workload kind\(s\) \['c'\]"):
        UnitSource(TwoKinds(), "r1", kinds=("c",))
    with pytest.raises(ConfigError, match="no ':'"):
        UnitSource(TwoKinds(), "r:1")

    class Duplicates(TwoKinds):
        def units(self, n: int, run_id: str) -> list[Unit]:
            return [Unit(f"{run_id}:a:0", "a", "complete", run_id=run_id)] * 2

    with pytest.raises(ConfigError, match="used twice"):
        UnitSource(Duplicates(), "r1").next()


def test_the_sample_workload_feeds_a_source() -> None:
    src = UnitSource(SampleWorkload(Settings(scan_assets=2), kinds=("order", "scan")), "r5", batch_per_kind=2)
    units = [src.next() for _ in range(6)]
    assert [u.kind for u in units] == ["order", "scan"] * 3
    assert all(u.run_id == "r5" and u.key in u.effects[0] for u in units)


def test_ledger_records_units_per_process_and_reads_them_back(tmp_path: Path) -> None:
    units = [Unit(f"r1:a:{i}", "a", "complete", (f"fx:{i}",), "r1") for i in range(3)]
    ledger = UnitLedger(tmp_path)
    ledger.write(units[0], task_id="t0")
    pid = os.fork()
    if pid == 0:  # a forked Locust worker writes its own file
        try:
            ledger.write(units[1])
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ledger.write(units[2])
    ledger.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"units.{os.getpid()}.jsonl", f"units.{pid}.jsonl"])
    assert sorted(u.key for u in read_units(tmp_path)) == [u.key for u in units]
    assert {u.key: u for u in read_units(tmp_path)}["r1:a:0"] == units[0]


def test_read_units_skips_a_torn_line_and_names_a_missing_directory(tmp_path: Path) -> None:
    (tmp_path / "units.1.jsonl").write_text('{"key":"r:a:0","kind":"a","expected":"complete","effects":[],'
                                            '"run_id":"r"}\n{"key":"r:a:1","ki')
    assert [u.key for u in read_units(tmp_path)] == ["r:a:0"]
    with pytest.raises(FileNotFoundError, match="units directory"):
        read_units(tmp_path / "missing")
