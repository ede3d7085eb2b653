"""read_history / merge_ops / write_history: merge order, reindexing, what is read and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.history import F, History, HistoryRecorder, Op, OpType, merge_ops, read_history, write_history


def op(index: int, time: int, process: str, f: str = F.PHASE, type: OpType = OpType.OK, **value: object) -> Op:
    return Op(index=index, time=time, process=process, type=type, f=f, value=dict(value))


def test_merge_orders_by_time_then_process_then_local_index_and_reindexes() -> None:
    a = [op(0, 100, "worker-2"), op(1, 100, "worker-2", n=2), op(2, 300, "worker-2")]
    b = [op(0, 100, "worker-1"), op(1, 200, "worker-1")]
    merged = merge_ops([a, b])
    assert [(o.index, o.time, o.process) for o in merged] == [
        (0, 100, "worker-1"), (1, 100, "worker-2"), (2, 100, "worker-2"), (3, 200, "worker-1"), (4, 300, "worker-2")]
    assert merged[2].value == {"n": 2}, "ties within a process keep the local order"


@given(st.lists(st.lists(st.integers(min_value=0, max_value=50), max_size=20), min_size=1, max_size=5))
def test_merge_keeps_each_process_in_its_own_order_and_sorts_by_time(deltas: list[list[int]]) -> None:
    groups = []
    for p, ds in enumerate(deltas):
        t, ops = 0, []
        for i, d in enumerate(ds):
            t += d
            ops.append(op(i, t, f"p{p}"))
        groups.append(ops)
    merged = merge_ops(groups)
    assert [o.index for o in merged] == list(range(sum(len(g) for g in groups)))
    assert [o.time for o in merged] == sorted(o.time for g in groups for o in g)
    for p, g in enumerate(groups):
        assert [o.time for o in merged if o.process == f"p{p}"] == [o.time for o in g]


def test_directory_merge_ignores_a_merged_file_next_to_the_process_files(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, "producer-1") as p, HistoryRecorder(tmp_path, "nemesis") as n:
        p.record(F.PUBLISH, OpType.INVOKE, {"task_id": "t1"})
        n.record(F.FAULT_START, OpType.INVOKE, {"fault": "partition_broker"})
        p.record(F.PUBLISH, OpType.INFO, {"task_id": "t1"}, error="timeout")
    h = read_history(tmp_path)
    assert [(o.index, o.process, o.f, o.type) for o in h] == [
        (0, "producer-1", "publish", OpType.INVOKE),
        (1, "nemesis", "fault_start", OpType.INVOKE),
        (2, "producer-1", "publish", OpType.INFO)]
    out = write_history(h, tmp_path / "HISTORY.jsonl")
    assert read_history(tmp_path) == h, "HISTORY.jsonl is not a process file: not merged twice"
    again = read_history(out)
    assert again == h and again[2].error == "timeout"


def test_single_file_keeps_line_order_and_valid_indices(tmp_path: Path) -> None:
    # A hand-written (synthetic) history: times out of order on purpose, indices with a gap.
    ops = [op(3, 50, "a"), op(7, 10, "b"), op(9, 20, "a")]
    write_history(ops, tmp_path / "h.jsonl")
    h = read_history(tmp_path / "h.jsonl")
    assert [(o.index, o.time) for o in h] == [(3, 50), (7, 10), (9, 20)]
    # Indices that do not increase are reassigned by position.
    write_history([op(5, 1, "a"), op(5, 2, "a")], tmp_path / "dup.jsonl")
    assert [o.index for o in read_history(tmp_path / "dup.jsonl")] == [0, 1]


def test_unparseable_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    good = op(0, 1, "a").to_json()
    (tmp_path / "h.jsonl").write_text("\n".join([good, "[1,2]", '{"time": 5}', "", good, '{"index": 4, "ti']))
    h = read_history(tmp_path / "h.jsonl")
    assert len(h) == 2
    assert [(s.line, s.torn) for s in h.skipped] == [(2, False), (3, False), (6, True)]
    assert "not an object" in h.skipped[0].reason and "KeyError" in h.skipped[1].reason
    with pytest.raises(ValueError, match=r"2 damaged line\(s\).*h.jsonl:2"):
        read_history(tmp_path / "h.jsonl", strict=True)


def test_lines_the_typed_decoder_refuses_read_as_the_lenient_reader_always_did(tmp_path: Path) -> None:
    # msgspec decodes exact types only; these lines go through Op.from_dict, which reads them
    # as before: a float time truncated, an index missing (-1, then reassigned), a non-str error
    # kept, a non-finite float, a non-UTF-8 byte skipped with the stdlib's reason.
    lines = [b'{"index":0,"time":1.9,"process":"a","type":"ok","f":"phase","value":{"n":1}}',
             b'{"time":2,"process":"a","type":"ok","f":"phase"}',
             b'{"index":2,"time":3,"process":"a","type":"fail","f":"phase","error":{"code":7}}',
             b'{"index":3,"time":4,"process":"a","type":"ok","f":"phase","value":1e400}',
             b'{"index":4,"time":5,"process":"a","type":"ok","f":"phase","value":"\xff"}']
    (tmp_path / "h.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    h = read_history(tmp_path / "h.jsonl")
    assert [(o.index, o.time, o.error) for o in h] == [(0, 1, None), (1, 2, None), (2, 3, {"code": 7}), (3, 4, None)]
    assert h[0].value == {"n": 1} and h[3].value == float("inf")
    assert [(s.line, s.torn) for s in h.skipped] == [(5, True)] and "UnicodeDecodeError" in h.skipped[0].reason


def test_missing_path_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="history directory"):
        read_history(tmp_path / "nope")


def test_history_selectors() -> None:
    h = History([
        op(0, 1, "producer-1", F.PUBLISH, OpType.INVOKE, task_id="t1", key="k1", run_id="r1"),
        op(1, 2, "worker-9", F.RECEIVE, OpType.OK, task_id="t1", key="k1", run_id="r1"),
        op(2, 3, "nemesis", F.FAULT_START, OpType.OK, fault="kill_worker"),
        op(3, 4, "worker-9", F.RECEIVE, OpType.OK, task_id="t0", key="k0", run_id="old"),
    ])
    assert len(h.where(f=F.RECEIVE)) == 2 and len(h.where(process="nemesis")) == 1
    assert len(h.where(f=[F.PUBLISH, F.RECEIVE], type="ok")) == 2
    assert list(h.by_task()) == ["t1", "t0"] and [o.index for o in h.by_task()["t1"]] == [0, 1]
    assert list(h.by_key()) == ["k1", "k0"]
    assert h.processes() == ["producer-1", "worker-9", "nemesis"]
    assert h.run_ids() == {"r1", "old"}
    assert isinstance(h[1:3], History) and [o.index for o in h[1:3]] == [1, 2]
    assert h[-1].value["task_id"] == "t0"
