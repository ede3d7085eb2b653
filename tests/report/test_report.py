"""Reports from synthetic histories and verdicts: JSON round trip, HTML content, JUnit failures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from harness.checkers.verdict import Validity, Verdict
from harness.history.ops import F, Op, OpType
from harness.report import (
    CertificationReport,
    ScenarioReport,
    build_timeline,
    fault_windows,
    write_report,
)

S = 1_000_000_000


def _history() -> list[Op]:
    ops = []
    for i in range(10):
        ops.append(Op(len(ops), i * S // 2, "producer", OpType.INVOKE, F.PUBLISH, {"task_id": f"t{i}"}))
        ops.append(Op(len(ops), i * S // 2 + S // 10, "worker", OpType.OK, F.EXECUTE, {"task_id": f"t{i}"}))
    ops.append(Op(len(ops), 1 * S, "nemesis", OpType.OK, F.FAULT_START, {"kind": "kill_worker", "fault_id": "a"}))
    ops.append(Op(len(ops), 2 * S, "nemesis", OpType.OK, F.FAULT_STOP, {"kind": "kill_worker", "fault_id": "a"}))
    ops.append(Op(len(ops), 3 * S, "worker", OpType.INFO, F.EXECUTE, {"task_id": "t9"}))
    return sorted(ops, key=lambda o: o.time)


def test_timeline_counts_completions_errors_and_latency():
    tl = build_timeline(_history(), bucket_s=1.0)
    assert sum(p.completed for p in tl) == 10
    assert sum(p.errors for p in tl) == 1
    assert all(abs(p.p50_ms - 100.0) < 1e-6 for p in tl if p.p50_ms is not None)


def test_fault_windows_pair_start_and_stop():
    (w,) = fault_windows(_history())
    assert (w.label, w.start, w.end) == ("kill_worker", 1.0, 2.0)


def test_unhealed_fault_runs_to_the_end():
    h = [op for op in _history() if op.f != F.FAULT_STOP]
    (w,) = fault_windows(h)
    assert w.end == 4.6  # the last op of the history


def _report() -> CertificationReport:
    h = _history()
    ok = ScenarioReport("kill_worker_child", "true", {"lost_tasks": Verdict("lost_tasks", Validity.TRUE)},
                        [{"kind": "kill_worker"}], 3.0, build_timeline(h), fault_windows(h))
    bad = ScenarioReport("early_acks", "false",
                         {"lost_tasks": Verdict("lost_tasks", Validity.FALSE, counts={"lost": 1},
                                                counterexamples=({"kind": "lost", "task_id": "t3"},))},
                         [], 1.0, replay="celery-chaos certify --seed 7")
    return CertificationReport("quick", [ok, bad], seed=7)


def test_write_report_files(tmp_path):
    paths = write_report(_report(), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["valid"] == "false" and data["summary"] == {"true": 1, "unknown": 0, "false": 1, "skipped": 0}
    assert data["scenarios"][1]["verdicts"]["lost_tasks"]["counterexamples"][0]["task_id"] == "t3"
    page = paths["html"].read_text()
    assert "<svg" in page and "kill_worker" in page and "t3" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, self-contained
    suite = ET.fromstring(paths["junit"].read_text())
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["early_acks"]
    assert "replay: celery-chaos certify --seed 7" in failed[0].find("failure").text


def test_empty_certification_is_unknown_not_a_pass():
    assert CertificationReport("quick", []).valid == "unknown"


def test_a_failing_scenario_keeps_its_history_for_celery_chaos_check(tmp_path):
    from harness.cli import check_main
    from harness.history import read_history

    h = _history()
    ok = ScenarioReport("baseline", "true", {}, [], 1.0, history=tuple(h))
    bad = ScenarioReport("partner_api_down", "false", {}, [], 1.0, history=tuple(h))
    paths = write_report(CertificationReport("quick", [ok, bad]), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert "history_file" not in data["scenarios"][0], "a valid scenario's history is not kept"
    assert data["scenarios"][1]["history_file"] == "histories/partner_api_down.jsonl"
    kept = read_history(tmp_path / "histories" / "partner_api_down.jsonl")
    assert [(op.time, op.f, op.value) for op in kept] == [(op.time, op.f, op.value) for op in h]
    assert not (tmp_path / "histories" / "baseline.jsonl").exists()
    import io

    out = io.StringIO()
    # 0 or 1 is a verdict on the history; 2 would mean the file could not be read.
    assert check_main([str(tmp_path / "histories" / "partner_api_down.jsonl")], out=out, err=out) in (0, 1), \
        out.getvalue()
