"""Chord conformance: every chord ends (its callback runs exactly once, after every header
task completed, or Celery records the chord's error), within the run.

Responsibility: one verdict per run on chords.

Contract with the recorder: header tasks' ops carry ``value.chord_id``. Celery's convention,
which harness/history records, is the callback's task id (a header's ``request.chord`` is the
callback signature); the task with that id is then the callback, whatever its own ops carry.
Explicit ``value.role`` (``"header"`` / ``"callback"``) with any shared ``chord_id`` works too
(the first op of a task carrying a chord_id wins); optionally ``value.chord_size``, the number
of header tasks, so a header never seen at all is noticed.

- ``callback_duplicated``: more than one callback task id executed, or the callback succeeded
  more than once with no cause a delivery explains (the chord fired twice, failure mode 14);
  a callback run again after a kill or a redelivery is ``callback_redelivered``, allowed
  under at-least-once executions (its effects are judged by the effects checker);
- ``chord_not_terminal``: on a result backend without native joins, the chord's
  ``celery.chord_unlock`` was still polling when the run ended (every poll retried, none
  published the callback or recorded the chord's error) and the callback never ran: the
  chord never reaches a terminal state (failure mode 13, ``chord_unlock`` retrying for ever);
- ``callback_missing``: every header task succeeded and no callback execution succeeded, and
  Celery recorded no error for the chord (a chord that never completes);
- ``premature_callback``: a callback execution started before every header had succeeded
  (a header failed, never ran, or finished later). The header whose successful execution
  published the callback (same process, during that execution) is exempt from the ordering: Celery publishes the callback from the
  last header's ``on_chord_part_return``, before that header's ``task_success`` is recorded,
  so the callback may legitimately start a moment before that header's ``execute`` ok.

A chord whose callback never ran but whose error Celery recorded (``chord_error`` ops: a
header failed, including the first step of a chain in the header, which carries no chord id)
ended, in failure: counted in ``chords_failed``. Whether its error callback ran, and how many
times, is for the effects checker (declare the errback's effect).

Unknown when the history has no chord ops.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> def run(t, tid, role, i):
    ...     v = {"task_id": tid, "chord_id": "c1", "role": role}
    ...     return [Op(i, t, "w", OpType.INVOKE, F.EXECUTE, v), Op(i + 1, t + 1, "w", OpType.OK, F.EXECUTE, v)]
    >>> h = run(0, "h1", "header", 0) + run(2, "h2", "header", 2) + run(4, "cb", "callback", 4)
    >>> check_chords(h, Expectations(chords=True)).valid.value
    'true'
"""

from __future__ import annotations

from typing import Any

from harness.checkers._base import Findings, History, as_index, loss_fields
from harness.checkers.expectations import Expectations
from harness.checkers.index import OK, RETRY, HistoryIndex, TaskRecord
from harness.checkers.verdict import Verdict

__all__ = ["check_chords"]


def check_chords(history: History, exp: Expectations | None = None) -> Verdict:
    """Exactly-once, after-all-headers callbacks of every chord (see the module docstring).

    Example:
        >>> check_chords([], Expectations(chords=True)).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("chords", exp, ix, kinds=("callback_duplicated", "callback_missing", "premature_callback",
                                            "chord_not_terminal"))
    completed = headerless = failed = 0
    for ch in ix.chords.values():
        expected_headers = max(ch.size or 0, len(ch.headers))
        header_done: list[int] = []
        for h in ch.headers:
            first = h.first_ok()
            if first is not None:
                header_done.append(first.end)  # type: ignore[arg-type]
        all_done = len(header_done) == len(ch.headers) and len(ch.headers) >= expected_headers
        last_header = max(header_done) if all_done and header_done else None
        cb_oks = [ex for cb in ch.callbacks for ex in cb.executions or () if ex.outcome == OK]
        cb_starts = [ex.start for cb in ch.callbacks for ex in cb.executions or ()]
        cb_published = [(cb.publish_first, cb.published_by) for cb in ch.callbacks if cb.publish_first is not None]
        positions = [p for rec in (*ch.headers, *ch.callbacks) for p in rec.positions]
        fields: dict[str, Any] = {"chord_id": ch.chord_id, "headers": len(ch.headers), "headers_expected": expected_headers,
                  "headers_succeeded": len(header_done), "callback_task_ids": [cb.task_id for cb in ch.callbacks]}
        if not ch.headers:
            headerless += 1
        callbacks_run = sum(1 for cb in ch.callbacks if cb.executions)
        if callbacks_run > 1 or (len(cb_oks) > 1 and not _redelivered(ch.callbacks, ix, exp)):
            fx.anomaly("callback_duplicated", callback_executions_ok=len(cb_oks), positions=positions, **fields)
        elif len(cb_oks) > 1:
            # The one callback task ran again because a kill or a lost ack made the broker deliver
            # it again: at-least-once delivery, judged by the effects checker, not a second chord firing.
            fx.anomaly("callback_redelivered", allowed=True, callback_executions_ok=len(cb_oks), positions=positions,
                       **fields)
        errored = [p for cb in ch.callbacks for p in cb.chord_errors or ()]
        if errored and not cb_oks:
            failed += 1
        if ch.unlocks and not errored and not cb_starts and not any(u.is_terminal for u in ch.unlocks):
            polls = [ex for u in ch.unlocks for ex in u.executions or ()]
            if polls:
                # Still polling at the end of the run: a livelock, not a loss (no claim allows it).
                fx.anomaly("chord_not_terminal", unlock_task_ids=[u.task_id for u in ch.unlocks],
                           unlock_polls=len(polls), unlock_retries=sum(1 for ex in polls if ex.outcome == RETRY),
                           first_poll=min(ex.start for ex in polls), last_poll=max(ex.start for ex in polls),
                           positions=positions + [p for u in ch.unlocks for p in u.positions], **fields)
                continue
        if all_done and not cb_oks and not errored:
            # A callback lost on the way (killed mid-run, or its chord_unlock lost) is allowed
            # only by an at-most-once claim; the counterexample names the loss and its cause.
            lost = [cb for cb in ch.callbacks if cb.outcome is None and (cb.executions or cb.publish_status == "ok")]
            lost = lost or [u for u in ch.unlocks if u.outcome is None] or [t for t in ix.tasks.values() if t.outcome is None and t.publish_status == "ok"
                            and (t.name or "").startswith("celery.chord_unlock")]
            why = loss_fields(lost[0], exp)[1] if lost else {}
            fx.anomaly("callback_missing", allowed=exp.claim.allows_loss and bool(lost), by_claim=True,
                       positions=positions, **fields, **why)
        if cb_starts and ch.headers:
            first_cb = min(cb_starts)
            exempt = _publisher(ch.headers, min(cb_published)) if cb_published else None
            pending = [h.task_id for h in ch.headers if h is not exempt and not _done_by(h, first_cb)]
            if pending or not all_done:
                fx.anomaly("premature_callback", callback_started=first_cb, last_header_succeeded=last_header,
                           headers_pending=pending[:20], positions=positions, **fields)
        if len(cb_oks) == 1 and all_done:
            completed += 1
    fx.counts.update(chords=len(ix.chords), chords_completed=completed, chords_failed=failed,
                     chords_without_headers=headerless)
    if headerless:
        fx.notes.append(f"{headerless} chords had a callback but no header op with role 'header': "
                        "premature callbacks cannot be judged for them")
    if not ix.chords:
        fx.vacuous("no chord ops (value.chord_id) in the history")
    return fx.verdict()


def _done_by(header: TaskRecord, t: int) -> bool:
    """Whether `header` had a successful execution that ended by time `t`."""
    return any(ex.outcome == OK and ex.end is not None and ex.end <= t for ex in header.executions or ())


def _publisher(headers: list[TaskRecord], published: tuple[int, str | None]) -> TaskRecord | None:
    """The header whose successful execution published the callback: on the publishing process,
    running at the publish, and the first such to end after it (a threads pool runs several
    headers in one process; the publisher completes right after publishing)."""
    t, process = published
    best: tuple[int, TaskRecord] | None = None
    for h in headers:
        for ex in h.executions or ():
            if ex.outcome == OK and ex.end is not None and ex.process == process and ex.start <= t <= ex.end:
                if best is None or ex.end < best[0]:
                    best = (ex.end, h)
    return None if best is None else best[1]


def _redelivered(callbacks: list[TaskRecord], ix: HistoryIndex, exp: Expectations) -> bool:
    """Whether every extra run of the (one) callback task is explained by a delivery: a kill, a
    worker loss or a redelivery (see harness.checkers.duplicates.attribute_duplicate)."""
    from harness.checkers.duplicates import attribute_duplicate

    if not exp.allow_duplicate_executions:
        return False
    for cb in callbacks:
        if cb.pub_ok > 1 or cb.pub_invokes > 1:
            return False  # published twice: the chord itself fired twice
        runs = sorted(cb.executions or (), key=lambda e: e.start)
        for prev, cur in zip(runs, runs[1:], strict=False):
            if attribute_duplicate(prev, cur, cb, ix) not in ("worker_lost", "redelivery", "retry"):
                return False
    return True
