"""The history index: one pass over the ops, grouped the way the checkers read them.

Responsibility: turn a flat `Sequence[Op]` into per-task records (publishes, receives,
executions paired invoke -> completion, retries, DLQ entries, ...), effects, faults and the
worker kills derived from them. Built once by `check_all` and shared by every checker, so a
1M-op history is walked once.

How ops are read (the contract with harness/history):

- Ops are grouped by ``value.task_id``. An ``execute`` invoke opens an `Execution`; its
  completion is the next ``execute`` ok / fail / info of the same task on the same ``process``
  (an ok is a success unless ``value.state == "IGNORED"``: the task raised Ignore, its message
  was acked and nothing finished; a fail is a retry when ``value.state == "RETRY"``, a
  rejection when "REJECTED", else a terminal failure; an info is an unknown outcome, except state "TIME_LIMIT", a terminal
  failure as Celery records it; the first completion wins, a later redundant ``info`` is
  ignored). A completion with no open invoke on
  its process becomes an *orphan* execution (start = end).
- A publish may come from any process (chain steps and retries are published by workers).
  Publish status of a task: ``ok`` if any publish was confirmed, else ``info`` if any was
  indeterminate (info, or an invoke never completed), else ``fail``.
- ``value.run_id`` different from the expected run's marks the op *foreign* (a leftover of
  another run); foreign ops are counted, remembered by task id and otherwise ignored.
- Faults pair ``fault_start``/``fault_stop`` by ``value.fault_id`` (or by kind, last open
  first); the kind is ``value.kind`` or ``value.fault``. A fault whose start ops say
  ``cuts_running_tasks`` (the nemesis writes it from the fault's driver) or whose kind is listed
  in ``Expectations.kill_fault_kinds`` is a *kill*; its scope is ``value.scope`` ("child" or
  "worker"), "worker" when the op does not say.
  A ``fault_start`` that completed with fail (never applied, ``never_bit``) is no fault. The
  target is read from the start ops' values: ``hostname``/``hostnames``/``worker``/``node``,
  ``pid``/``pids``/``killed_pids``/``child_pid``, or ``task_id``; without a target it hits
  every worker.
- A ``worker_lost`` op is a child kill of the recording worker's children (``value.task_id``
  narrows it to one task).
- A ``chord_error`` ok op (Celery recorded a chord's failure instead of running its callback)
  makes the callback's task terminal, outcome "failed", without an execution. A task whose ops
  carry ``role: "unlock"`` (``celery.chord_unlock``) joins its chord's `ChordRecord.unlocks`.
- An execution that never completed (or completed ``info``) is *cut* by the earliest kill that
  matches its target and happened while it ran (`Execution.killed_by`).

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> ix = build_index([
    ...     Op(0, 10, "producer-1", OpType.INVOKE, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...     Op(1, 20, "producer-1", OpType.OK, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...     Op(2, 30, "w1.child-7", OpType.INVOKE, F.EXECUTE, {"task_id": "t1", "attempt": 0}),
    ...     Op(3, 40, "w1.child-7", OpType.OK, F.EXECUTE, {"task_id": "t1"})])
    >>> t = ix.tasks["t1"]
    >>> t.publish_status, t.executions[0].outcome, t.is_terminal
    ('ok', 'ok', True)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.history.ops import F, Op, OpType

__all__ = [
    "FAILURE",
    "IGNORED",
    "INFO",
    "OK",
    "REJECTED",
    "RETRY",
    "ChordRecord",
    "Execution",
    "Fault",
    "HistoryIndex",
    "Kill",
    "TaskRecord",
    "build_index",
]

# Execution outcomes (None: the execution never completed).
OK = "ok"
FAILURE = "failure"
RETRY = "retry"
REJECTED = "rejected"  # the task raised Reject: the message was requeued or dropped, not finished
INFO = "info"
IGNORED = "ignored"  # the task raised Ignore: its message was acked, it neither succeeded nor failed

# A pool child's death is noticed (and recorded) by its parent a little after the kill:
# an execution that ended `info` up to this long before the kill's record still counts as cut.
_KILL_SLACK_NS = 1_000_000_000
_FOREVER = 1 << 62

_STORED_EFFECT = F.STORED_EFFECT
_EMPTY: dict[str, Any] = {}

# Op kinds as small ints (one dict lookup per op instead of a chain of string compares).
_C_EXECUTE, _C_RECEIVE, _C_PUBLISH, _C_EFFECT, _C_RETRY, _C_DLQ, _C_REVOKE, _C_REJECT, _C_WORKER_LOST = range(1, 10)
_C_CHORD_ERROR = 10
_C_FAULT, _C_PHASE, _C_STORED, _C_DLQ_ENTRY = 20, 21, 22, 23
_CODES = {F.EXECUTE: _C_EXECUTE, F.RECEIVE: _C_RECEIVE, F.PUBLISH: _C_PUBLISH, F.EFFECT: _C_EFFECT,
          F.RETRY: _C_RETRY, F.DLQ: _C_DLQ, F.REVOKE: _C_REVOKE, F.REJECT: _C_REJECT,
          F.WORKER_LOST: _C_WORKER_LOST, F.CHORD_ERROR: _C_CHORD_ERROR, F.FAULT_START: _C_FAULT, F.FAULT_STOP: _C_FAULT, F.PHASE: _C_PHASE,
          _STORED_EFFECT: _C_STORED, F.DLQ_ENTRY: _C_DLQ_ENTRY}

_INVOKE = OpType.INVOKE
_OKT = OpType.OK
_FAILT = OpType.FAIL
_INFOT = OpType.INFO


@dataclass(slots=True, eq=False)
class Kill:
    """A worker (scope "worker") or pool child (scope "child") killed between `time_lo` and `time_hi`."""

    source: str  # "fault" or "worker_lost"
    time_lo: int
    time_hi: int
    scope: str
    pos: int
    kind: str | None = None
    fault_id: str | None = None
    hostnames: frozenset[str] = frozenset()
    pids: frozenset[int] = frozenset()
    task_id: str | None = None
    process: str | None = None  # worker_lost: the recording worker; its children were hit
    #: A kill triggered by a task's success with a hold (``on_success(hold_s=...)``): that
    #: task's result was stored and its message not acked when the kill landed.
    held_success_of: str | None = None

    def matches(self, ex: Execution) -> bool:
        """Whether `ex` ran on what this kill hit (ignoring time)."""
        if self.task_id is not None:
            return ex.task_id == self.task_id
        targeted = False
        if self.hostnames:
            targeted = True
            if ex.hostname in self.hostnames:
                return True
        if self.pids:
            targeted = True
            if ex.pid in self.pids or _parent_pid(ex.process) in self.pids:
                return True
        if targeted:
            return False
        if self.process is not None:
            return ex.process == self.process or ex.process.startswith(self.process + ".")
        return True


@dataclass(slots=True, eq=False)
class Execution:
    """One run of a task body: execute invoke -> ok / fail / info (or never completed)."""

    task_id: str
    attempt: int
    process: str
    hostname: str
    pid: int | None
    start: int
    start_pos: int
    end: int | None = None
    end_pos: int = -1
    outcome: str | None = None
    orphan: bool = False
    killed_by: Kill | None = None

    @property
    def completed(self) -> bool:
        """Ran to an end the worker observed (ok, terminal failure or retry)."""
        return self.outcome is not None and self.outcome != INFO

    def running_at(self, t: int) -> bool:
        return self.start <= t and (self.end is None or self.end > t)


@dataclass(slots=True, eq=False)
class TaskRecord:
    """Everything the history says about one task id."""

    task_id: str
    first_seen: int
    key: str | None = None
    name: str | None = None
    chord_id: str | None = None
    role: str | None = None
    chord_size: int | None = None
    pub_invokes: int = 0
    pub_ok: int = 0
    pub_info: int = 0
    pub_fail: int = 0
    publish_first: int | None = None  # time of the first publish op of any type
    publish_ok: int | None = None  # time of the first confirmed publish
    published_by: str | None = None
    countdown: float | None = None  # of the first publish (ETA / countdown tasks)
    receives: list[tuple[int, bool, str, int]] | None = None  # (time, redelivered, hostname, pos)
    executions: list[Execution] | None = None
    retries: list[tuple[int, float | None, int | None, int]] | None = None  # (time, countdown, attempt, pos)
    dlq: list[int] | None = None  # positions of dlq ops (what the system's code says it dead-lettered)
    dlq_stored: list[int] | None = None  # positions of dlq_entry ops (what the DLQ held after the drain)
    revokes: int = 0
    rejects: list[tuple[int, bool, int]] | None = None  # (time, requeue, pos)
    worker_lost: list[int] | None = None  # positions
    #: positions of ``chord_error`` ok ops: Celery recorded this chord callback's failure
    #: (a header failed, the join raised...) instead of running it: a terminal state.
    chord_errors: list[int] | None = None
    positions: list[int] = field(default_factory=list)

    @property
    def publish_status(self) -> str | None:
        """"ok", "info" (maybe published), "fail" (known not sent) or None (never published)."""
        if self.pub_ok:
            return "ok"
        if self.pub_info or self.pub_invokes > self.pub_fail + self.pub_info:
            return "info"
        if self.pub_fail:
            return "fail"
        return None

    # The properties below run once or more per task in several checkers (millions of calls on
    # a large history): plain loops, no generator per call, one pass for `outcome`.

    @property
    def succeeded(self) -> bool:
        for ex in self.executions or ():
            if ex.outcome == OK:
                return True
        return False

    @property
    def failed(self) -> bool:
        """Ended in a terminal failure (FAILURE, e.g. retries exhausted) and never succeeded."""
        failure = False
        for ex in self.executions or ():
            o = ex.outcome
            if o == OK:
                return False
            if o == FAILURE:
                failure = True
        return failure

    @property
    def is_terminal(self) -> bool:
        """Executed to completion (success or terminal failure), dead-lettered, revoked, or (a
        chord callback) failed by its chord's error."""
        if self.dlq or self.dlq_stored or self.revokes or self.chord_errors:
            return True
        for ex in self.executions or ():
            o = ex.outcome
            if o == OK or o == FAILURE:
                return True
        return False

    @property
    def outcome(self) -> str | None:
        """"complete", "dlq", "failed", "revoked" or None (not terminal)."""
        failure = False
        for ex in self.executions or ():
            o = ex.outcome
            if o == OK:
                return "complete"
            if o == FAILURE:
                failure = True
        if self.dlq or self.dlq_stored:
            return "dlq"
        if failure or self.chord_errors:
            return "failed"
        if self.revokes:
            return "revoked"
        return None

    def first_ok(self) -> Execution | None:
        best = None
        for ex in self.executions or ():
            if ex.outcome == OK and (best is None or ex.end < best.end):  # type: ignore[operator]
                best = ex
        return best


@dataclass(slots=True, eq=False)
class Fault:
    """One fault: started between `start_lo` and `start_hi`, healed between `stop_lo` and `stop_hi`."""

    fault_id: str | None
    kind: str | None
    start_lo: int
    start_hi: int
    start_pos: int
    value: dict[str, Any] = field(default_factory=dict)
    applied: bool = True  # False when fault_start completed with fail
    start_done: bool = False
    stop_lo: int | None = None  # heal asked
    stop_hi: int | None = None  # heal confirmed (fault_stop ok / info)
    stop_pos: int = -1

    @property
    def healed(self) -> bool:
        """The heal was confirmed (a fault_stop completed other than with fail)."""
        return self.stop_hi is not None

    def active_during(self, lo: int, hi: int) -> bool:
        """Whether the fault may have been in effect at some time in [lo, hi]."""
        return self.applied and self.start_lo <= hi and (self.stop_hi is None or self.stop_hi >= lo)


@dataclass(slots=True, eq=False)
class ChordRecord:
    """One chord: its header tasks, its callback task(s) and, on a result backend without native
    joins, the ``celery.chord_unlock`` task(s) polling its header (``role: "unlock"``)."""

    chord_id: str
    headers: list[TaskRecord] = field(default_factory=list)
    callbacks: list[TaskRecord] = field(default_factory=list)
    size: int | None = None
    unlocks: list[TaskRecord] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class HistoryIndex:
    """The grouped history. `history` is the original sequence (for counterexample slices)."""

    history: Sequence[Op]
    run_id: str | None
    kill_fault_kinds: frozenset[str]
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    effects: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # applied (not duplicate)
    effects_deduplicated: int = 0
    stored_records: list[int] = field(default_factory=list)  # positions of stored_effect ops
    dlq_store: list[int] = field(default_factory=list)  # positions of dlq_entry ops
    faults: list[Fault] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    phases: list[tuple[int, str, int]] = field(default_factory=list)
    foreign_ops: int = 0
    foreign: dict[str, int] = field(default_factory=dict)  # task id (or "op@pos") -> first pos
    orphan_completions: int = 0
    unmatched_fault_stops: int = 0
    ok_times: list[int] = field(default_factory=list)
    first_time: int | None = None
    last_time: int | None = None
    n_ops: int = 0
    keys: dict[str, list[TaskRecord]] = field(default_factory=dict)
    chords: dict[str, ChordRecord] = field(default_factory=dict)
    _fault_starts: list[int] | None = field(default=None, repr=False)
    _fault_reach: list[int] = field(default_factory=list, repr=False)

    @property
    def final_state(self) -> dict[str, Any] | None:
        """What the drain read (the last ``final_state`` phase op's value), or None when it never ran."""
        for _t, name, pos in reversed(self.phases):
            if name == "final_state":
                v = self.history[pos].value
                return v if isinstance(v, dict) else {}
        return None

    def fault_active_during(self, lo: int, hi: int) -> bool:
        """Whether any applied fault may have been in effect at some time in [lo, hi] (O(log n)).

        >>> from harness.history.ops import Op, OpType
        >>> ix = build_index([Op(0, 10, "nemesis", OpType.OK, "fault_start", {"kind": "x", "fault_id": "f"}),
        ...                   Op(1, 20, "nemesis", OpType.OK, "fault_stop", {"kind": "x", "fault_id": "f"})])
        >>> ix.fault_active_during(0, 9), ix.fault_active_during(15, 30), ix.fault_active_during(21, 30)
        (False, True, False)
        """
        if self._fault_starts is None:
            spans = sorted((f.start_lo, f.stop_hi if f.stop_hi is not None else _FOREVER)
                           for f in self.faults if f.applied)
            self._fault_starts = [a for a, _ in spans]
            reach: list[int] = []
            top = -_FOREVER
            for _, b in spans:
                top = max(top, b)
                reach.append(top)
            self._fault_reach = reach
        i = bisect_right(self._fault_starts, hi)  # faults started by `hi`
        return i > 0 and self._fault_reach[i - 1] >= lo

    def ops_at(self, positions: Iterable[int], limit: int) -> list[dict[str, Any]]:
        """The ops at `positions` (history order), as dicts, at most `limit` of them.

        Over the limit, the first and last ops are kept around an ``{"elided": n}`` marker: the
        end of a task's story (its last attempt, its dead letter) usually explains the verdict.
        """
        ps = sorted(set(positions))
        h = self.history
        if len(ps) <= limit:
            return [h[p].to_dict() for p in ps]
        if limit < 3:
            return [h[p].to_dict() for p in ps[:limit]]
        tail = (limit - 1) // 2
        head = limit - 1 - tail
        return ([h[p].to_dict() for p in ps[:head]] + [{"elided": len(ps) - head - tail}]
                + [h[p].to_dict() for p in ps[-tail:]])


def _parent_pid(process: str) -> int | None:
    # Recorder convention: "worker-4242.child-4250" is a child of worker pid 4242.
    head = process.split(".", 1)[0]
    _, _, num = head.rpartition("-")
    return int(num) if num.isdigit() else None


def _as_int(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str) and x.isdigit():
        return int(x)
    return None


def _pids_of(v: dict[str, Any]) -> frozenset[int]:
    out: set[int] = set()
    for k in ("pid", "target_pid", "child_pid", "worker_pid"):
        p = _as_int(v.get(k))
        if p is not None:
            out.add(p)
    for k in ("pids", "child_pids", "killed_pids"):
        seq = v.get(k)
        if isinstance(seq, list):
            out.update(p for p in map(_as_int, seq) if p is not None)
    return frozenset(out)


def _hostnames_of(v: dict[str, Any]) -> frozenset[str]:
    out = set()
    for k in ("hostname", "worker", "node"):
        h = v.get(k)
        if isinstance(h, str) and h:
            out.add(h)
    hs = v.get("hostnames")
    if isinstance(hs, list):
        out.update(h for h in hs if isinstance(h, str))
    return frozenset(out)


def build_index(history: Sequence[Op], *, run_id: str | None = None,
                kill_fault_kinds: Iterable[str] = ()) -> HistoryIndex:
    """Index `history` in one pass (see the module docstring for how ops are read).

    Example:
        >>> from harness.history.ops import F, Op, OpType
        >>> ix = build_index([Op(0, 5, "w", OpType.OK, F.RECEIVE, {"task_id": "t", "run_id": "old"})],
        ...                  run_id="new")
        >>> ix.foreign_ops, list(ix.foreign)
        (1, ['t'])
    """
    ix = HistoryIndex(history=history, run_id=run_id, kill_fault_kinds=frozenset(kill_fault_kinds))
    tasks = ix.tasks
    ok_times = ix.ok_times
    foreign = ix.foreign
    worker_lost_ops: list[tuple[int, Op]] = []
    fault_ops: list[tuple[int, Op]] = []
    codes = _CODES
    empty = _EMPTY
    check_run = run_id is not None
    first_time = last_time = None
    if len(history):
        first_time = last_time = history[0].time

    # One branch per op kind, most frequent first; everything per op stays inline (this loop
    # is the whole cost of checking a 1M-op history).
    pos = -1
    for pos, op in enumerate(history):
        t = op.time
        if t < first_time:  # type: ignore[operator]
            first_time = t
        elif t > last_time:  # type: ignore[operator]
            last_time = t
        v = op.value
        if v.__class__ is not dict:
            v = empty
        if check_run:
            rid = v.get("run_id")
            if rid is not None and rid != run_id:
                ix.foreign_ops += 1
                tid = v.get("task_id")
                fk = str(tid) if tid is not None else f"op@{pos}"
                if fk not in foreign:
                    foreign[fk] = pos
                continue
        code = codes.get(op.f, 0)
        if code >= _C_FAULT:
            if code == _C_FAULT:
                fault_ops.append((pos, op))
            elif code == _C_PHASE:
                name = v.get("phase") or v.get("name")
                ix.phases.append((t, str(name), pos))
            elif code == _C_STORED:
                ix.stored_records.append(pos)
            else:
                ix.dlq_store.append(pos)
            continue
        tid = v.get("task_id")
        if tid is None:
            if code == _C_WORKER_LOST:
                worker_lost_ops.append((pos, op))
            elif code == _C_EFFECT:
                _add_effect(ix, v, pos)
            continue
        rec = tasks.get(tid)
        if rec is None:
            rec = tasks[tid] = TaskRecord(tid, t)
        rec.positions.append(pos)
        typ = op.type
        if code == _C_EXECUTE:
            if rec.key is None or rec.name is None or (rec.chord_id is None and v.get("chord_id") is not None):
                _fill_meta(rec, v)
            exs = rec.executions
            if typ is _INVOKE:
                ex = Execution(tid, v.get("attempt") or 0, op.process, v.get("hostname") or op.process,
                               v.get("pid"), t, pos)
                if exs is None:
                    rec.executions = [ex]
                else:
                    exs.append(ex)
                continue
            if typ is _OKT:
                outcome = IGNORED if v.get("state") == "IGNORED" else OK
            elif typ is _FAILT:
                state = v.get("state")
                outcome = RETRY if state == "RETRY" else REJECTED if state == "REJECTED" else FAILURE
            else:
                # A hard time limit kills the child but Celery marks the task FAILURE
                # (TimeLimitExceeded): a terminal failure, not an unknown outcome.
                outcome = FAILURE if v.get("state") == "TIME_LIMIT" else INFO
            target = None
            if exs:
                process = op.process
                for i in range(len(exs) - 1, -1, -1):
                    ex = exs[i]
                    if ex.outcome is None and ex.process == process:
                        target = ex
                        break
            if target is None:
                if outcome == INFO:
                    continue  # redundant: the first completion won, or nothing was running
                ix.orphan_completions += 1
                target = Execution(tid, v.get("attempt") or 0, op.process, v.get("hostname") or op.process,
                                   v.get("pid"), t, pos, orphan=True)
                if exs is None:
                    rec.executions = [target]
                else:
                    exs.append(target)
            target.end = t
            target.end_pos = pos
            target.outcome = outcome
            if outcome == OK:
                ok_times.append(t)
        elif code == _C_RECEIVE:
            if rec.key is None or rec.name is None:
                _fill_meta(rec, v)
            item = (t, bool(v.get("redelivered")), v.get("hostname") or op.process, pos)
            if rec.receives is None:
                rec.receives = [item]
            else:
                rec.receives.append(item)
        elif code == _C_PUBLISH:
            if rec.key is None or rec.name is None or (rec.chord_id is None and v.get("chord_id") is not None):
                _fill_meta(rec, v)
            if rec.publish_first is None:
                rec.publish_first = t
                rec.published_by = op.process
                cd = v.get("countdown")
                if cd is not None and cd.__class__ in (int, float):
                    rec.countdown = float(cd)
            if typ is _INVOKE:
                rec.pub_invokes += 1
            elif typ is _OKT:
                rec.pub_ok += 1
                if rec.publish_ok is None:
                    rec.publish_ok = t
            elif typ is _INFOT:
                rec.pub_info += 1
            else:
                rec.pub_fail += 1
        elif code == _C_EFFECT:
            _add_effect(ix, v, pos)
        elif code == _C_RETRY:
            cd = v.get("countdown")
            item2 = (t, float(cd) if cd is not None and cd.__class__ in (int, float) else None,
                     _as_int(v.get("attempt")), pos)
            if rec.retries is None:
                rec.retries = [item2]
            else:
                rec.retries.append(item2)
        elif code == _C_DLQ:
            if rec.key is None:
                _fill_meta(rec, v)
            if rec.dlq is None:
                rec.dlq = [pos]
            else:
                rec.dlq.append(pos)
        elif code == _C_REVOKE:
            rec.revokes += 1
        elif code == _C_REJECT:
            item3 = (t, bool(v.get("requeue")), pos)
            if rec.rejects is None:
                rec.rejects = [item3]
            else:
                rec.rejects.append(item3)
        elif code == _C_CHORD_ERROR:
            if rec.key is None or rec.name is None or rec.chord_id is None:
                _fill_meta(rec, v)
            if typ is _OKT:
                if rec.chord_errors is None:
                    rec.chord_errors = [pos]
                else:
                    rec.chord_errors.append(pos)
        elif code == _C_WORKER_LOST:
            if rec.worker_lost is None:
                rec.worker_lost = [pos]
            else:
                rec.worker_lost.append(pos)
            worker_lost_ops.append((pos, op))

    ix.n_ops = pos + 1
    ix.first_time = first_time
    ix.last_time = last_time
    _index_faults(ix, fault_ops)
    _index_kills(ix, worker_lost_ops)
    _cut_executions(ix)
    _attach_dlq_store(ix)
    _group_keys_and_chords(ix)
    return ix


def _attach_dlq_store(ix: HistoryIndex) -> None:
    # A DLQ entry is the final state of its task; an entry for a task this run never saw gets
    # a record of its own, so the lost-task checker reports it as unexpected.
    for pos in ix.dlq_store:
        op = ix.history[pos]
        v = op.value if isinstance(op.value, dict) else _EMPTY
        tid = v.get("task_id")
        if tid is None:
            continue
        rec = ix.tasks.get(str(tid))
        if rec is None:
            rec = ix.tasks[str(tid)] = TaskRecord(str(tid), op.time)
            _fill_meta(rec, v)
        rec.positions.append(pos)
        if rec.dlq_stored is None:
            rec.dlq_stored = [pos]
        else:
            rec.dlq_stored.append(pos)


def _add_effect(ix: HistoryIndex, v: dict[str, Any], pos: int) -> None:
    key = v.get("key")
    if key is None:
        return
    if v.get("duplicate"):
        ix.effects_deduplicated += 1
        return
    # One effect is one idempotency key when the system names it: a unit may apply several
    # effects of one kind (one row per scanned asset), and those are not duplicates.
    idem = v.get("idempotency_key")
    kind = str(v.get("kind"))
    ek = (str(key), f"{kind}#{idem}" if idem is not None else kind)
    lst = ix.effects.get(ek)
    if lst is None:
        ix.effects[ek] = [pos]
    else:
        lst.append(pos)


def _fill_meta(rec: TaskRecord, v: dict[str, Any]) -> None:
    if rec.key is None:
        k = v.get("key")
        if k is None:
            k = v.get("task_key")
        if k is not None:
            rec.key = str(k)
    if rec.name is None:
        n = v.get("name")
        if n is not None:
            rec.name = str(n)
    if rec.chord_id is None:
        c = v.get("chord_id")
        if c is not None:
            rec.chord_id = str(c)
            role = v.get("role")
            rec.role = str(role) if role is not None else None
    if rec.chord_size is None:
        size = v.get("chord_size")
        if size is not None:
            rec.chord_size = _as_int(size)


def _index_faults(ix: HistoryIndex, fault_ops: list[tuple[int, Op]]) -> None:
    by_id: dict[str, Fault] = {}
    open_by_kind: dict[str | None, list[Fault]] = {}  # faults recorded without a fault_id
    for pos, op in fault_ops:
        v = op.value if isinstance(op.value, dict) else {}
        kind = v.get("kind") or v.get("fault")
        kind = str(kind) if kind is not None else None
        fid = v.get("fault_id", v.get("id"))
        fid = str(fid) if fid is not None else None
        if op.f == F.FAULT_START:
            fault = None
            if op.type is not _INVOKE:
                if fid is not None:
                    fault = by_id.get(fid)
                else:
                    fault = next((fl for fl in reversed(open_by_kind.get(kind, ())) if not fl.start_done), None)
                if fault is not None and fault.start_done:
                    fault = None
            if fault is None:
                fault = Fault(fid, kind, op.time, op.time, pos, dict(v))
                ix.faults.append(fault)
                if fid is not None:
                    by_id[fid] = fault
                else:
                    open_by_kind.setdefault(kind, []).append(fault)
                if op.type is _INVOKE:
                    continue
            fault.start_hi = op.time
            fault.start_done = True
            fault.value.update(v)
            if fault.kind is None:
                fault.kind = kind
            if op.type is _FAILT:
                fault.applied = False
        else:
            if fid is not None:
                fault = by_id.get(fid)
            else:
                fault = next((fl for fl in reversed(open_by_kind.get(kind, ())) if fl.stop_hi is None), None)
            if fault is None or fault.stop_hi is not None:
                ix.unmatched_fault_stops += 1
                continue
            if op.type is _INVOKE:
                if fault.stop_lo is None:
                    fault.stop_lo = op.time
                    fault.stop_pos = pos
                continue
            if fault.stop_lo is None:
                fault.stop_lo = op.time
            fault.stop_pos = pos
            if op.type is not _FAILT:  # a failed heal leaves the fault in place
                fault.stop_hi = op.time


def _index_kills(ix: HistoryIndex, worker_lost_ops: list[tuple[int, Op]]) -> None:
    for fault in ix.faults:
        kind = fault.kind
        if not fault.applied or kind is None:
            continue
        v = fault.value
        if not (v.get("cuts_running_tasks") is True or kind in ix.kill_fault_kinds):
            continue
        scope = v.get("scope")
        if scope not in ("worker", "child"):
            scope = "worker"
        tid = v.get("task_id")
        raw = v.get("event")
        ev: dict[str, Any] = raw if isinstance(raw, dict) else {}
        held = (str(ev["task_id"]) if ev.get("held") is True and ev.get("f") == F.EXECUTE and ev.get("type") == "ok"
                and ev.get("task_id") is not None else None)
        ix.kills.append(Kill("fault", fault.start_lo, fault.start_hi, scope, fault.start_pos, kind=kind,
                             fault_id=fault.fault_id, hostnames=_hostnames_of(v), pids=_pids_of(v),
                             task_id=str(tid) if tid is not None else None, held_success_of=held))
    for pos, op in worker_lost_ops:
        v = op.value if isinstance(op.value, dict) else {}
        tid = v.get("task_id")
        ix.kills.append(Kill("worker_lost", op.time, op.time, "child", pos, kind="worker_lost",
                             task_id=str(tid) if tid is not None else None, process=op.process))
    ix.kills.sort(key=lambda k: k.time_lo)


def _cut_executions(ix: HistoryIndex) -> None:
    """Give each incomplete execution the earliest kill that hit it.

    Kills are bucketed by target (task id, hostname, pid, recording process, or none), so each
    incomplete execution looks only at the kills that could have hit it: linear, not
    executions x kills.
    """
    if not ix.kills:
        return
    by_task: dict[str, list[Kill]] = {}
    by_host: dict[str, list[Kill]] = {}
    by_pid: dict[int, list[Kill]] = {}
    by_process: dict[str, list[Kill]] = {}
    untargeted: list[Kill] = []
    for k in ix.kills:
        if k.task_id is not None:
            by_task.setdefault(k.task_id, []).append(k)
            continue
        if k.hostnames or k.pids:
            for h in k.hostnames:
                by_host.setdefault(h, []).append(k)
            for p in k.pids:
                by_pid.setdefault(p, []).append(k)
        elif k.process is not None:
            by_process.setdefault(k.process, []).append(k)
        else:
            untargeted.append(k)
    for rec in ix.tasks.values():
        for ex in rec.executions or ():
            if ex.outcome is not None and ex.outcome != INFO:
                continue
            candidates = list(untargeted)
            candidates += by_task.get(ex.task_id, ())
            candidates += by_host.get(ex.hostname, ())
            if by_pid:
                if ex.pid is not None:
                    candidates += by_pid.get(ex.pid, ())
                parent = _parent_pid(ex.process)
                if parent is not None and parent != ex.pid:
                    candidates += by_pid.get(parent, ())
            if by_process:
                candidates += by_process.get(ex.process, ())
                head = ex.process.split(".", 1)[0]
                if head != ex.process:
                    candidates += by_process.get(head, ())
            best = None
            for k in candidates:
                if ex.start > k.time_hi:
                    continue
                if ex.end is not None and ex.end < k.time_lo - _KILL_SLACK_NS:
                    continue
                if (best is None or k.time_lo < best.time_lo) and k.matches(ex):
                    best = k
            ex.killed_by = best


def _group_keys_and_chords(ix: HistoryIndex) -> None:
    keys = ix.keys
    chords = ix.chords
    for rec in ix.tasks.values():
        if rec.key is not None:
            lst = keys.get(rec.key)
            if lst is None:
                keys[rec.key] = [rec]
            else:
                lst.append(rec)
        if rec.chord_id is not None:
            ch = chords.get(rec.chord_id)
            if ch is None:
                ch = chords[rec.chord_id] = ChordRecord(rec.chord_id)
            if rec.role == "callback" or (rec.role is None and rec.task_id == rec.chord_id):
                ch.callbacks.append(rec)
            elif rec.role == "unlock":
                ch.unlocks.append(rec)
            else:
                ch.headers.append(rec)
            if rec.chord_size is not None:
                ch.size = max(ch.size or 0, rec.chord_size)
    # Celery's convention, recorded by harness/history: a header task's request.chord is the
    # callback signature, so its chord_id is the callback's task id; the callback's own ops
    # carry no chord_id. Attach such callbacks to their chord.
    tasks = ix.tasks
    for cid, ch in chords.items():
        cb = tasks.get(cid)
        if cb is not None and cb.chord_id is None and cb not in ch.callbacks:
            ch.callbacks.append(cb)
