"""HistoryRecorder: one append-only file per process that survives SIGKILL, thread- and fork-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.history import F, HistoryRecorder, OpType, read_history
from harness.history.recorder import child_process_name, history_file_name


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_records_jepsen_keys_in_order_with_local_index(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, "nemesis") as rec:
        rec.record(F.FAULT_START, OpType.INVOKE, {"fault": "kill_worker"})
        rec.record(F.FAULT_START, "ok", {"fault": "kill_worker", "pid": 7})
        rec.record(F.FAULT_STOP, OpType.INFO, None, error="timeout")
    rows = _lines(rec.path)
    assert [list(r) for r in rows[:2]] == [["index", "time", "process", "type", "f", "value"]] * 2
    assert list(rows[2]) == ["index", "time", "process", "type", "f", "value", "error"]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["type"] for r in rows] == ["invoke", "ok", "info"]
    assert {r["process"] for r in rows} == {"nemesis"}
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[0] > 0
    assert rec.path.name == history_file_name("nemesis", os.getpid())


def test_bad_op_type_and_use_after_close_are_explained(tmp_path: Path) -> None:
    rec = HistoryRecorder(tmp_path, "harness")
    with pytest.raises(ValueError, match="invoke, ok, fail, info"):
        rec.record(F.PHASE, "done")
    rec.close()
    rec.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        rec.record(F.PHASE, "ok")
    with pytest.raises(ValueError, match="process"):
        HistoryRecorder(tmp_path, "")


def test_concurrent_threads_never_interleave_lines(tmp_path: Path) -> None:
    threads, per_thread = 8, 300
    rec = HistoryRecorder(tmp_path, "worker-1")
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait(timeout=10)
        for i in range(per_thread):
            rec.record(F.EFFECT, OpType.OK, {"key": f"k{t}-{i}", "pad": "x" * (i % 50)})

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    rec.close()
    rows = _lines(rec.path)  # json.loads fails on any interleaved line
    assert len(rows) == threads * per_thread
    assert [r["index"] for r in rows] == list(range(threads * per_thread))
    times = [r["time"] for r in rows]
    assert times == sorted(times), "file order must be time order"
    assert len({r["value"]["key"] for r in rows}) == threads * per_thread


def test_forked_child_records_into_its_own_file_under_a_child_name(tmp_path: Path) -> None:
    rec = HistoryRecorder(tmp_path, "worker-10")
    rec.record(F.RECEIVE, OpType.OK, {"task_id": "t1"})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: record, report, exit without running pytest's cleanup
        try:
            os.close(r)
            rec.record(F.EXECUTE, OpType.INVOKE, {"task_id": "t1"})
            os.write(w, f"{rec.process}\n{rec.path}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        child_process, child_path = fh.read().split("\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rec.record(F.RECEIVE, OpType.OK, {"task_id": "t2"})
    rec.close()

    assert child_process == child_process_name("worker-10", pid)
    child_rows = _lines(Path(child_path))
    assert [(c["process"], c["f"], c["index"]) for c in child_rows] == [(child_process, "execute", 0)]
    parent_rows = _lines(rec.path)
    assert [(p["process"], p["value"]["task_id"], p["index"]) for p in parent_rows] == [
        ("worker-10", "t1", 0), ("worker-10", "t2", 1)]
    merged = read_history(tmp_path)
    assert [op.value["task_id"] for op in merged] == ["t1", "t1", "t2"]
    assert [op.f for op in merged] == ["receive", "execute", "receive"]


_WRITER = r"""
import sys
from harness.history import HistoryRecorder
rec = HistoryRecorder(sys.argv[1], "producer-1")
i = 0
while True:  # until SIGKILLed by the test (which bounds it with a deadline)
    rec.record("publish", "invoke", {"task_id": f"t{i}", "key": f"k{i}", "pad": "y" * 200})
    i += 1
"""


def test_sigkilled_writer_leaves_every_recorded_op_readable(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        files: list[Path] = []
        while time.monotonic() < deadline:
            files = list(tmp_path.glob("*.jsonl"))
            if files and files[0].stat().st_size > 500_000:  # > 1500 lines of ~330 bytes
                break
            assert proc.poll() is None, "writer died on its own"
            time.sleep(0.01)
        else:
            pytest.fail(f"writer wrote too little in 30 s: {files}")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    h = read_history(tmp_path, strict=True)
    assert len(h) > 1000
    assert all(s.torn for s in h.skipped) and len(h.skipped) <= 1
    # No op lost in the middle: the writer's ids are a gap-free prefix.
    assert [op.value["task_id"] for op in h] == [f"t{i}" for i in range(len(h))]


def test_torn_last_line_is_skipped_and_a_reused_pid_starts_on_a_fresh_line(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, "worker-1") as rec:
        for i in range(3):
            rec.record(F.EXECUTE, OpType.INVOKE, {"task_id": f"t{i}"})
    # What a write cut short by SIGKILL leaves: the last line without its end.
    data = rec.path.read_bytes()
    rec.path.write_bytes(data[: len(data) - 25])

    h = read_history(tmp_path)
    assert [op.value["task_id"] for op in h] == ["t0", "t1"]
    assert len(h.skipped) == 1 and h.skipped[0].torn and h.skipped[0].line == 3
    assert h.torn_lines == 1

    # Same process name and pid again (pid reuse): the new op must not glue onto the fragment.
    with HistoryRecorder(tmp_path, "worker-1") as again:
        again.record(F.EXECUTE, OpType.INVOKE, {"task_id": "t9"})
    h2 = read_history(tmp_path)
    assert [op.value["task_id"] for op in h2] == ["t0", "t1", "t9"]
    assert len(h2.skipped) == 1 and not h2.skipped[0].torn, "the fragment is now mid-file"
    with pytest.raises(ValueError, match="damaged line"):
        read_history(tmp_path, strict=True)
