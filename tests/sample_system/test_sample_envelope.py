"""Dead-letter envelopes (pure): both message shapes become the same DLQEntry; copies are merged."""

from __future__ import annotations

from harness.workload import DLQEntry
from sample_system.dlq.envelope import (
    entry_from_envelope,
    entry_from_task_message,
    is_envelope,
    make_envelope,
    merge_copies,
    with_failure,
)


def test_rejected_celery_message_gives_id_name_args_kwargs_attempts_and_origin() -> None:
    headers = {"id": "t1", "task": "payments.charge", "retries": 5, "chaos_key": "r:exhausted:0", "chaos_run_id": "r",
               "x-first-death-queue": "payments", "x-first-death-reason": "rejected",
               "x-death": [{"queue": "payments", "reason": "rejected", "count": 1}]}
    e = entry_from_task_message(headers, [[{"order_id": "o"}], {"key": "r:exhausted:0"}, {"chain": None}])
    assert e == DLQEntry(task_id="t1", name="payments.charge", args=({"order_id": "o"},),
                         kwargs={"key": "r:exhausted:0"}, attempts=6, key="r:exhausted:0", run_id="r",
                         queue="payments", reason="rejected")


def test_key_falls_back_to_the_task_kwarg() -> None:
    e = entry_from_task_message({"id": "t", "task": "n"}, [[], {"key": "k"}, {}])
    assert (e.key, e.queue, e.reason, e.attempts) == ("k", None, "rejected", 1)


def test_published_envelope_round_trips() -> None:
    env = make_envelope(task_id="t2", name="notifications.deliver", args=["sms"], kwargs={"key": "k"},
                        exception="TimeLimitExceeded: 2", traceback="tb", attempts=1, key="k", run_id="r",
                        queue="notifications", reason="time_limit", failed_at=1.5, signature={"task": "x"})
    assert is_envelope(env) and not is_envelope([[], {}, {}])
    e = entry_from_envelope(env)
    assert (e.task_id, e.args, e.exception, e.traceback, e.reason, e.queue) == (
        "t2", ("sms",), "TimeLimitExceeded: 2", "tb", "time_limit", "notifications")


def test_copies_of_one_task_are_merged_and_counted() -> None:
    a1 = DLQEntry(task_id="a", name="n", attempts=2)
    a2 = DLQEntry(task_id="a", name="n", attempts=3)
    merged = merge_copies([a1, DLQEntry(task_id="b", name="n"), a2])
    assert [(e.task_id, e.copies, e.attempts) for e in merged] == [("a", 2, 3), ("b", 1, 1)]


def test_failure_details_fill_in_a_rejected_message() -> None:
    e = with_failure(DLQEntry(task_id="a", name="n", attempts=1), exception="E: x", traceback="tb", attempts=4)
    assert (e.exception, e.traceback, e.attempts) == ("E: x", "tb", 4)
