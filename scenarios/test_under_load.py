"""Chaos under load: the sample system at a steady ~10 submits/s while a fault comes and goes.

Each scenario asserts what the issue asks of a run under load: no lost task, no duplicate
effect, throughput back to 80 % of its pre-fault level within a bound after the heal, and a
report that holds the p99 completion latency during and after the fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import Validity
from harness.faults import KillWorkerChild, RolePartition, Schedule, at
from harness.load.under_load import UnderLoadResult, run_under_load
from sample_system.deploy import prepare

pytestmark = pytest.mark.chaos

RATE = 10.0
DURATION_S = 24.0
RECOVERY_BOUND_S = 10.0


def _run(stack: Any, schedule: Schedule, out: Path) -> UnderLoadResult:
    with prepare(stack) as d:
        result = run_under_load(stack, d, schedule, rate_per_s=RATE, duration_s=DURATION_S, out_dir=out,
                                log=print, recovery_slo_s=RECOVERY_BOUND_S)
    return result


def _assert_under_load(result: UnderLoadResult, out: Path) -> None:
    summary = result.summary()
    assert result.counts["units"] >= RATE * DURATION_S * 0.5, summary
    assert result.quiesced, summary
    (applied,) = result.schedule_as_run
    assert applied.outcome == "healed", summary
    assert result.verdict("lost_tasks").valid is Validity.TRUE, summary
    assert result.verdict("duplicates").valid is Validity.TRUE, summary
    assert not [c for c in result.verdict("recovery").violations() if c.get("kind") == "slow_throughput_recovery"], \
        summary
    (w,) = result.windows
    assert w.throughput_before_per_s and w.throughput_before_per_s > 0, summary
    assert w.time_to_recover_s is not None and w.time_to_recover_s <= RECOVERY_BOUND_S, summary
    assert w.p99_during_ms is not None and w.p99_after_ms is not None, summary
    report = json.loads((out / "result.json").read_text())
    assert report["windows"][0]["p99_during_ms"] == w.p99_during_ms
    assert report["windows"][0]["p99_after_ms"] == w.p99_after_ms
    assert report["throughput"]["before_per_s"] is not None


def test_child_kill_under_load(chaos_stack: Any, tmp_path: Path) -> None:
    """A pool child SIGKILLed mid-task at 8 s: its task is redelivered, the rate comes back."""
    result = _run(chaos_stack, Schedule.of(at(8.0, KillWorkerChild(wait_s=5.0))), tmp_path)
    _assert_under_load(result, tmp_path)


def test_worker_broker_outage_under_load(chaos_stack: Any, tmp_path: Path) -> None:
    """The workers cut from the broker for 3 s while producers keep publishing: the backlog drains."""
    result = _run(chaos_stack, Schedule.of(at(8.0, RolePartition("worker_broker"), duration_s=3.0)), tmp_path)
    _assert_under_load(result, tmp_path)
    (w,) = result.windows
    assert w.end_s - w.start_s >= 2.5, result.summary()


@pytest.mark.soak
def test_soak_two_minutes_writes_the_report(tmp_path: Path) -> None:
    """`celery-chaos soak --duration 2m`: stops by itself, faults every 30 s, a complete report."""
    from harness.load.soak_run import soak_main

    report = tmp_path / "report"
    lines: list[str] = []
    code = soak_main(["--duration", "2m", "--rate", "8", "--fault-every", "30s", "--sample-every", "3s",
                      "--report", str(report)], out=lines.append)
    log = "\n".join(lines)
    assert code in (0, 1), log
    doc = json.loads((report / "report.json").read_text())
    (scenario,) = doc["scenarios"]
    assert {"lost_tasks", "duplicates", "memory_leak:worker_rss", "memory_leak:broker_rss"} <= set(scenario["verdicts"])
    assert scenario["verdicts"]["lost_tasks"]["valid"] is True, log
    assert scenario["verdicts"]["duplicates"]["valid"] is True, log
    assert [f["kind"] for f in scenario["schedule"]] == ["kill_worker_child", "broker_outage", "reset_peer"], log
    assert len(scenario["fault_windows"]) >= 2 and scenario["timeline"]
    soak = json.loads((report / "soak.json").read_text())
    assert doc["soak"]["series"] == soak["series"]
    series = {s["name"]: s["points"] for s in soak["series"]}
    assert len(series["worker_rss"]) >= 20 and len(series["broker_rss"]) >= 20, soak["sampler_errors"]
    assert len(series["queue_depth"]) >= 20 and sum(p[1] for p in series["throughput"]) > 0
    assert set(soak["leak_verdicts"]) == {"memory_leak:worker_rss", "memory_leak:broker_rss"}
    assert soak["run"]["windows"] and all(w["p99_during_ms"] is not None for w in soak["run"]["windows"][:1])
    html = (report / "report.html").read_text()
    assert "soak" in html and "<script src=" not in html
