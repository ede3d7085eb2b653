"""harness.load.soak: throughput series from a history, the leak verdict, sampling and memory probes."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time

import pytest

from harness.checkers.verdict import Validity
from harness.errors import ConfigError
from harness.history.ops import F, Op, OpType
from harness.load.soak import (
    LeakPolicy,
    Sampler,
    Series,
    leak_verdict,
    progress_line,
    rss_bytes,
    rss_slope,
    throughput_series,
    total_rss,
)

S = 1_000_000_000


def execute_ok(times_s: list[float], f: str = F.EXECUTE, type_: OpType = OpType.OK) -> list[Op]:
    return [Op(i, int(t * S), "w1.child-7", type_, f, {"task_id": f"t{i}"}) for i, t in enumerate(times_s)]


def test_throughput_shows_a_stall_as_a_dip_and_ignores_other_ops() -> None:
    ops = execute_ok([0.5 * i for i in range(20)])                       # 2/s for 10 s
    ops += execute_ok([10 + 0.5 * i for i in range(20)], type_=OpType.INVOKE)   # not completions
    ops += execute_ok([20 + 0.25 * i for i in range(40)])                # a stall from 10 to 20 s, then 4/s
    series = throughput_series(ops, bucket_s=5)
    assert series.unit == "per_s" and series.name == "execute_ok_per_s"
    assert [v for _, v in series.points] == [2.0, 2.0, 0.0, 0.0, 4.0, 4.0]
    assert [t for t, _ in series.points] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def test_throughput_window_and_other_ops() -> None:
    ops = execute_ok([1, 2, 3, 11, 12]) + execute_ok([4], f=F.PUBLISH)
    assert throughput_series(ops, bucket_s=10, start_ns=2 * S, end_ns=12 * S).points == ((0.0, 0.3),)  # 2, 3, 11
    assert throughput_series(ops, f=F.PUBLISH, bucket_s=1).points[-1] == (3.0, 1.0)
    assert throughput_series([], bucket_s=1).points == ()
    with pytest.raises(ConfigError, match="bucket_s"):
        throughput_series(ops, bucket_s=0)


def test_rss_slope_fits_a_line() -> None:
    slope, intercept, r2 = rss_slope([(t, 5.0 + 3.0 * t) for t in range(10)])
    assert (round(slope, 9), round(intercept, 9), round(r2, 9)) == (3.0, 5.0, 1.0)
    assert rss_slope([(0, 7.0), (1, 7.0), (2, 7.0)]) == (0.0, 7.0, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        rss_slope([(0, 1.0)])
    with pytest.raises(ValueError, match="same time"):
        rss_slope([(1, 1.0), (1, 2.0)])


def mib(x: float) -> float:
    return x * 1024 * 1024


def test_steady_growth_is_a_leak_with_its_numbers() -> None:
    series = Series("worker_rss", "bytes", [(60.0 * m, mib(150) + mib(1) * m) for m in range(31)])  # 60 MiB/h
    v = leak_verdict(series)
    assert v.checker == "memory_leak:worker_rss" and v.valid is Validity.FALSE
    assert math.isclose(v.metrics["growth_bytes_per_hour"], mib(60))
    assert v.violations()[0]["kind"] == "memory_growth" and "MiB/h" in v.notes[0]


def test_flat_noisy_and_sawtooth_memory_is_not_a_leak() -> None:
    rng = random.Random(7)
    noisy = Series("broker_rss", "bytes", [(30.0 * i, mib(200) + rng.uniform(-mib(5), mib(5))) for i in range(60)])
    sawtooth = Series("worker_rss", "bytes", [(30.0 * i, mib(100) + mib(2) * (i % 10)) for i in range(60)])
    for s in (noisy, sawtooth):
        assert leak_verdict(s).valid is Validity.TRUE, leak_verdict(s).notes


def test_warm_up_growth_is_ignored() -> None:
    # Caches fill in the first minutes, then the process is flat.
    pts = [(60.0 * m, mib(100) + mib(20) * min(m, 2)) for m in range(30)]
    assert leak_verdict(Series("w", "bytes", pts)).valid is Validity.TRUE


def test_too_little_data_is_unknown_and_says_how_to_fix_it() -> None:
    v = leak_verdict(Series("w", "bytes", [(float(t), mib(100) + mib(t)) for t in range(5)]))
    assert v.valid is Validity.UNKNOWN and "sample longer" in v.notes[0]
    assert leak_verdict(Series("w", "bytes", [])).valid is Validity.UNKNOWN
    with pytest.raises(ConfigError, match="warmup_fraction"):
        LeakPolicy(warmup_fraction=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sampler_keeps_series_leaves_gaps_and_counts_probe_errors() -> None:
    clock = FakeClock()
    values = iter([1.0, None, 3.0, 4.0])

    def broken() -> float:
        raise ConnectionError("broker down")

    s = Sampler({"depth": ("messages", lambda: next(values)), "rss": ("bytes", broken)}, interval_s=1,
                max_points=2, clock=clock)
    for _ in range(4):
        s.sample_now()
        clock.now += 5
    series = s.series()
    assert series["depth"].points == ((10.0, 3.0), (15.0, 4.0))    # the None is a gap; oldest dropped
    assert series["rss"].points == ()
    assert s.errors() == {"rss": (4, "ConnectionError: broker down")}


def test_sampler_thread_samples_until_stopped() -> None:
    calls: list[float] = []
    with Sampler({"x": ("n", lambda: calls.append(1.0) or float(len(calls)))}, interval_s=0.01) as s:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    n = len(calls)
    assert n >= 3 and len(s.series()["x"].points) == n
    time.sleep(0.05)
    assert len(calls) == n                                            # stopped means stopped
    with pytest.raises(ConfigError, match="interval_s"):
        Sampler({}, interval_s=0)


def test_rss_of_a_process_tree_and_of_a_gone_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(30_000_000); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while (rss_bytes(child.pid, include_children=False) or 0) < 30_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        own = rss_bytes(os.getpid(), include_children=False)
        assert own is not None and rss_bytes(child.pid, include_children=False) >= 30_000_000
        assert rss_bytes(os.getpid()) >= own + 30_000_000            # the tree includes the child
        assert total_rss([child.pid, os.getpid()], include_children=False) >= own + 30_000_000
    finally:
        child.kill()
        child.wait(10)
    assert rss_bytes(child.pid) is None and total_rss([child.pid]) is None


def test_progress_line() -> None:
    assert progress_line(0, 60, width=4) == "[----]   0%  00:00/01:00"
    assert progress_line(4000, 3600, width=4, rate="9.5/s", leak=None) == "[####] 100%  1:06:40/1:00:00  rate=9.5/s"
