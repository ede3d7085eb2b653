"""The history index: pairing executions, publish status, faults and kills, foreign ops."""

from __future__ import annotations

from checker_ops import H

from harness.checkers.index import FAILURE, INFO, OK, REJECTED, RETRY, build_index


def test_completion_pairs_with_the_open_execution_on_the_same_process() -> None:
    h = (H().start("t", "p1", at=1).start("t", "p2", at=2)   # two copies in flight
         .end("t", "p2", at=3).end("t", "p1", result="fail", state="FAILURE", at=4))
    ex = build_index(h.ops).tasks["t"].executions
    assert [(e.process, e.outcome) for e in ex] == [("p1", FAILURE), ("p2", OK)]


def test_fail_states_and_redundant_info() -> None:
    h = (H().start("a", at=1).end("a", result="fail", state="RETRY", at=2)
         .start("b", at=3).end("b", result="fail", state="REJECTED", at=4)
         .start("c", at=5).end("c", at=6).end("c", result="info", state="WORKER_LOST", at=7)  # first wins
         .start("d", at=8).end("d", result="info", at=9))
    t = build_index(h.ops).tasks
    assert [e.outcome for e in t["a"].executions] == [RETRY]
    assert [e.outcome for e in t["b"].executions] == [REJECTED]
    assert [e.outcome for e in t["c"].executions] == [OK]
    assert [e.outcome for e in t["d"].executions] == [INFO]


def test_completion_without_invoke_is_an_orphan() -> None:
    ix = build_index(H().end("t", "p", at=5).ops)
    (ex,) = ix.tasks["t"].executions
    assert ex.orphan and ex.start == ex.end and ix.orphan_completions == 1


def test_publish_status_ok_beats_info_beats_fail() -> None:
    h = (H().publish("ok", result="fail").publish("ok")
         .publish("info", result="info").publish("open", result="none").publish("fail", result="fail"))
    t = build_index(h.ops).tasks
    assert {k: r.publish_status for k, r in t.items()} == {
        "ok": "ok", "info": "info", "open": "info", "fail": "fail"}


def test_faults_pair_by_id_or_by_kind() -> None:
    h = (H().fault("partition_broker", "f1", at=1).fault("slow_backend", None, at=2)  # type: ignore[arg-type]
         .heal("slow_backend", None, at=3).heal("partition_broker", "f1", at=4)  # type: ignore[arg-type]
         .fault("partition_broker", "f2", at=5))
    ix = build_index(h.ops)
    assert [(f.kind, f.fault_id, f.healed) for f in ix.faults] == [
        ("partition_broker", "f1", True), ("slow_backend", None, True), ("partition_broker", "f2", False)]


def test_fault_value_key_may_be_named_fault() -> None:
    h = H().op("nemesis", "invoke", "fault_start", {"fault": "kill_worker", "hostname": "w1",
                                                            "cuts_running_tasks": True}, at=1)
    ix = build_index(h.ops)
    assert ix.faults[0].kind == "kill_worker" and ix.kills[0].scope == "worker"


def test_a_kill_cuts_only_incomplete_executions_on_its_target() -> None:
    h = (H().start("a", "w1.child-1", host="w1", at=1).start("b", "w2.child-1", host="w2", at=1)
         .start("c", "w1.child-2", host="w1", at=1).end("c", "w1.child-2", at=2)
         .fault("kill_worker", "k1", at=5, hostname="w1"))
    t = build_index(h.ops).tasks
    assert t["a"].executions[0].killed_by is not None
    assert t["b"].executions[0].killed_by is None          # other worker
    assert t["c"].executions[0].killed_by is None          # had completed


def test_kill_kinds_scope_and_pid_targets() -> None:
    h = (H().start("a", "worker-100.child-1001", host="w1", at=1)
         .fault("kill_worker_child", "k1", at=5, pid=100)
         .fault("oom_worker", "k2", at=6))
    ix = build_index(h.ops, kill_fault_kinds={"oom_worker"})
    assert [(k.kind, k.scope) for k in ix.kills] == [("kill_worker_child", "child"), ("oom_worker", "worker")]
    assert ix.tasks["a"].executions[0].killed_by.kind == "kill_worker_child"
    # Without the extra kind, the OOM fault is not a kill.
    assert [k.kind for k in build_index(h.ops).kills] == ["kill_worker_child"]


def test_worker_lost_with_task_id_cuts_that_task_only() -> None:
    h = (H().start("a", "worker-w1.child-1", at=1).start("b", "worker-w1.child-2", at=1)
         .worker_lost("a", at=3).end("a", "worker-w1.child-1", result="info", at=3.1))
    t = build_index(h.ops).tasks
    assert t["a"].executions[0].killed_by.source == "worker_lost"
    assert t["b"].executions[0].killed_by is None


def test_ops_of_another_run_are_foreign() -> None:
    h = H(run_id="old").done("t", "k")
    h.run_id = "new"
    h.done("u", "k2")
    ix = build_index(h.ops, run_id="new")
    assert set(ix.tasks) == {"u"} and list(ix.foreign) == ["t"] and ix.foreign_ops == 6


def test_keys_group_chain_steps_and_chords_follow_celery_convention() -> None:
    h = (H().publish("s1", "k").run("s1").publish("s2", "k", process="w1.child-1").run("s2")
         .publish("h1", "c").start("h1", chord_id="cb").end("h1")
         .publish("cb", "c").run("cb"))
    ix = build_index(h.ops)
    assert sorted(r.task_id for r in ix.keys["k"]) == ["s1", "s2"]
    ch = ix.chords["cb"]
    assert [r.task_id for r in ch.headers] == ["h1"] and [r.task_id for r in ch.callbacks] == ["cb"]


def test_hard_time_limit_is_a_terminal_failure() -> None:
    h = H().start("t", at=1).end("t", result="info", state="TIME_LIMIT", at=2)
    rec = build_index(h.ops).tasks["t"]
    assert rec.executions[0].outcome == FAILURE and rec.outcome == "failed"


def test_counterexample_ops_keep_the_first_and_the_last_over_the_limit() -> None:
    h = H()
    for i in range(10):
        h.start("t", at=2 * i).end("t", result="fail", state="RETRY", at=2 * i + 1)
    ix = build_index(h.ops)
    ops = ix.ops_at(range(20), 7)
    assert len(ops) == 7 and ops[3] == {"elided": 14}
    assert [o["index"] for o in ops[:3]] == [0, 1, 2] and [o["index"] for o in ops[4:]] == [17, 18, 19]
    assert len(ix.ops_at(range(20), 20)) == 20 and {"elided": 0} not in ix.ops_at(range(20), 20)


def test_an_ignored_copy_is_neither_a_success_nor_a_failure() -> None:
    # A stale copy the app drops with Ignore (the sample's retry-fork guard) must not make a
    # task that was dead-lettered look completed.
    from harness.checkers.index import IGNORED

    h = H().publish("t1", key="k1").start("t1", attempt=3).end("t1", state="IGNORED")
    rec = build_index(h.ops).tasks["t1"]
    assert [e.outcome for e in rec.executions or ()] == [IGNORED]
    assert not rec.succeeded and not rec.failed and rec.outcome is None
