"""`celery-chaos check`: reads a history (file or directory), runs the checkers, exit status by verdict."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness.cli import check_main
from harness.history import F, HistoryRecorder, Op, OpType, write_history


def _one_task_history(*, executed: bool) -> list[Op]:
    ops: list[Op] = []
    base = {"task_id": "t1", "name": "app.add", "key": "k1", "run_id": "r1"}

    def add(process: str, type_: str, f: str, **extra: object) -> None:
        ops.append(Op(len(ops), 1000 + 10 * len(ops), process, OpType(type_), f, {**base, **extra}))

    add("producer-1", "invoke", F.PUBLISH)
    add("producer-1", "ok", F.PUBLISH)
    if executed:
        add("worker-1", "ok", F.RECEIVE, redelivered=False)
        add("worker-1.child-2", "invoke", F.EXECUTE, attempt=0)
        add("worker-1.child-2", "ok", F.EXECUTE, attempt=0, state="SUCCESS")
    return ops


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = check_main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def expect(tmp_path: Path) -> Path:
    p = tmp_path / "exp.json"
    p.write_text(json.dumps({"run_id": "r1", "require_fault_bite": False}))
    return p


def test_a_clean_history_is_valid_and_exits_0(tmp_path: Path, expect: Path) -> None:
    write_history(_one_task_history(executed=True), tmp_path / "HISTORY.jsonl")
    code, out, err = _run([str(tmp_path / "HISTORY.jsonl"), "--expect", str(expect)])
    report = json.loads(out)
    assert code == 0, (out, err)
    assert report["valid"] is True and report["history"]["ops"] == 5
    assert report["verdicts"] and all(v["valid"] is True for v in report["verdicts"].values())


def test_a_lost_task_is_invalid_and_exits_1(tmp_path: Path, expect: Path) -> None:
    write_history(_one_task_history(executed=False), tmp_path / "HISTORY.jsonl")
    code, out, _ = _run([str(tmp_path / "HISTORY.jsonl"), "--expect", str(expect)])
    report = json.loads(out)
    assert code == 1 and report["valid"] is not True
    assert report["verdicts"]["lost_tasks"]["valid"] is False


def test_a_run_directory_is_merged_and_torn_lines_are_reported(tmp_path: Path, expect: Path) -> None:
    hdir = tmp_path / "history"
    with HistoryRecorder(hdir, "producer-1") as rec:
        for op in _one_task_history(executed=True):
            rec.record(op.f, op.type, op.value)
    with open(rec.path, "ab") as fh:
        fh.write(b'{"index": 99, "tim')  # what a SIGKILL mid-write leaves
    code, out, _ = _run([str(hdir), "--expect", str(expect)])
    report = json.loads(out)
    assert code == 0
    assert [s["torn"] for s in report["history"]["skipped_lines"]] == [True]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"no_such_option": 1}', "exp.json"),
])
def test_bad_expectations_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    write_history(_one_task_history(executed=True), tmp_path / "h.jsonl")
    (tmp_path / "exp.json").write_text(content)
    code, out, err = _run([str(tmp_path / "h.jsonl"), "--expect", str(tmp_path / "exp.json")])
    assert code == 2 and out == "" and message in err


def test_missing_inputs_are_usage_errors(tmp_path: Path) -> None:
    code, _, err = _run([str(tmp_path / "nope.jsonl")])
    assert code == 2 and "no history at" in err
    write_history(_one_task_history(executed=True), tmp_path / "h.jsonl")
    code, _, err = _run([str(tmp_path / "h.jsonl"), "--expect", str(tmp_path / "nope.json")])
    assert code == 2 and "no expectations file" in err
    assert _run([])[0] == 2
