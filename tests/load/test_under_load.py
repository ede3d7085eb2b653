"""Pure parts of chaos under load and the soak command: per-fault windows, durations, schedules, bad input."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.history.ops import F, Op, OpType
from harness.load.soak_run import parse_duration, soak_main, soak_schedule
from harness.load.under_load import completion_latencies, window_stats

S = 1_000_000_000


def _history(fault: tuple[float, float], stall: tuple[float, float], end_s: float = 30.0) -> list[Op]:
    """10 tasks/s published and executed 50 ms later, none executed during `stall` (they run at its end)."""
    ops: list[Op] = []
    i = 0
    for n in range(int(end_s * 10)):
        t = n / 10
        tid = f"t{n}"
        done = t + 0.05 if not (stall[0] <= t + 0.05 < stall[1]) else stall[1] + n * 1e-4
        ops.append(Op(i, int(t * S), "load-1", OpType.INVOKE, F.PUBLISH, {"task_id": tid}))
        ops.append(Op(i + 1, int(done * S), "w1.child-1", OpType.OK, F.EXECUTE, {"task_id": tid}))
        i += 2
    ops.append(Op(i, int(fault[0] * S), "nemesis", OpType.OK, F.FAULT_START, {"fault_id": "f1", "kind": "outage"}))
    ops.append(Op(i + 1, int(fault[1] * S), "nemesis", OpType.OK, F.FAULT_STOP, {"fault_id": "f1", "kind": "outage"}))
    return sorted(ops, key=lambda o: o.time)


def test_window_stats_measure_the_stall_and_the_recovery() -> None:
    h = _history(fault=(10.0, 13.0), stall=(10.0, 13.0))
    (w,), rates = window_stats(h, load_start_ns=0, load_end_ns=30 * S, window_s=2.0)
    assert (w.id, w.kind, w.start_s, w.end_s) == ("f1", "outage", 10.0, 13.0)
    assert w.throughput_before_per_s == pytest.approx(10.0, rel=0.1)
    assert w.throughput_during_per_s == 0.0
    assert w.time_to_recover_s is not None and w.time_to_recover_s <= 0.1
    assert w.p99_during_ms is not None and w.p99_during_ms >= 2500  # published at 10 s, done at 13 s
    assert w.p99_after_ms is not None and w.p99_after_ms < 100
    assert w.incomplete == 0
    assert rates["before_per_s"] == pytest.approx(10.0, rel=0.1) and rates["time_to_recover_s"] is not None


def test_window_stats_never_recovered_when_work_stops() -> None:
    h = [op for op in _history(fault=(10.0, 12.0), stall=(10.0, 12.0)) if not (op.f == F.EXECUTE and op.time > 12 * S)]
    (w,), rates = window_stats(h, load_start_ns=0, load_end_ns=30 * S)
    assert w.time_to_recover_s is None and rates["time_to_recover_s"] is None
    assert w.incomplete > 0


def test_an_instant_fault_counts_one_window_as_during() -> None:
    h = _history(fault=(10.0, 10.0), stall=(0.0, 0.0))
    (w,), _ = window_stats(h, load_start_ns=0, load_end_ns=30 * S, window_s=2.0)
    assert w.p99_during_ms is not None and w.completed_during == pytest.approx(20, abs=1)


def test_completion_latency_of_an_unfinished_task_is_none() -> None:
    h = [Op(0, 0, "p", OpType.INVOKE, F.PUBLISH, {"task_id": "a"})]
    assert completion_latencies(h) == [(0, None)]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("2.5m", 150.0),
                                               ("45", 45.0), ("500ms", 0.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5d", "-3s", "m5"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="e.g. 90s, 30m or 1h"):
        parse_duration(text)


def test_soak_schedule_cycles_kinds_and_ends_before_the_load() -> None:
    sched = soak_schedule(1800, 60)
    kinds = [sf.fault.kind for sf in sched.faults]
    assert kinds[:5] == ["kill_worker_child", "broker_outage", "reset_peer", "latency", "kill_worker_child"]
    assert all(sf.at_s + sf.duration_s + 10 <= 1800 for sf in sched.faults)
    assert len(sched.faults) == 29


@pytest.mark.parametrize("argv", [["--duration", "soon"], ["--duration", "10s"], ["--duration", "5m", "--rate", "0"],
                                  ["--duration", "5m", "--fault-every", "x"], ["--duration", "5m", "--workload", "nope"],
                                  []])
def test_soak_bad_input_exits_2_with_a_message(argv: list[str]) -> None:
    lines: list[str] = []
    assert soak_main(argv, out=lines.append) == 2
    if argv:
        assert lines and "error" in lines[0]
