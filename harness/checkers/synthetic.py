"""Synthetic histories of a correct at-least-once Celery system, with known anomalies injected.

Responsibility: build histories the checkers can be tested and benchmarked on, together with
the exact set of violations each checker must report. A run is described as data: a list of
`UnitPlan` (one workload unit each: a simple task, a retried task, a dead-lettered one, a
chain, a chord, a task killed mid-execution, a visibility-timeout duplicate, an indeterminate
publish, a rate-limited task) and a list of `Injection` (drop an execution, duplicate an
effect, an extra retry, ...). `synthesize` turns them into ops in the vocabulary of
harness/history (Celery's conventions: chord_id is the callback's task id, retries keep the
task id and increment ``attempt``, chain steps are published by workers with the same key).

Anomaly ids (`anomaly_id`): a task id for task-level kinds, the workload key for ``stuck`` /
``wrong_outcome`` / ``duplicate_effect``, the chord id for chord kinds, ``hostname/name`` for
``rate_exceeded``, the fault id for ``unhealed_fault``.

Example:
    >>> from harness.checkers import check_all
    >>> run = synthesize([UnitPlan("simple"), UnitPlan("retry", retries=2)],
    ...                  [Injection("drop_execution", 0)], seed=1)
    >>> sorted(run.expected)
    [('liveness', 'stuck', 'k0'), ('lost_tasks', 'lost', 'run-1-t0')]
    >>> reported_violations(check_all(run.ops, run.exp)) == run.expected
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checkers.expectations import Expectations, RetryPolicy
from harness.checkers.verdict import Verdict
from harness.history.ops import F, Op, OpType

__all__ = [
    "CONFIGS",
    "GLOBAL_INJECTIONS",
    "INJECTIONS",
    "UNIT_KINDS",
    "Injection",
    "SyntheticRun",
    "UnitPlan",
    "anomaly_id",
    "random_plans",
    "reported_violations",
    "synthesize",
]

UNIT_KINDS = ("simple", "retry", "dlq", "chain", "chord", "killed", "overlap", "maybe_published", "limited")

# Injection kind -> unit kinds it can target. Global injections add their own ops.
INJECTIONS: Mapping[str, tuple[str, ...]] = {
    "drop_execution": ("simple",),
    "duplicate_effect": ("simple",),
    "dlq_completed": ("simple",),
    "extra_retry": ("retry",),
    "bad_countdown": ("retry",),
    "early_retry": ("retry",),
    "dlq_twice": ("dlq",),
    "missing_dlq": ("dlq",),
    "callback_twice": ("chord",),
    "premature_callback": ("chord",),
    "not_redelivered": ("killed",),
}
GLOBAL_INJECTIONS = ("foreign_run", "never_published", "rate_burst", "unhealed_fault")

# Configurations of acks: (acks_late, reject_on_worker_lost).
CONFIGS: Mapping[str, tuple[bool, bool]] = {
    "late_reject": (True, True),
    "late": (True, False),
    "early": (False, False),
}

MAX_RETRIES = 3
POLICY = RetryPolicy(max_retries=MAX_RETRIES, backoff_factor=1.0, backoff_max=8.0, jitter=True)
LIMITED = "tasks.limited"
RATE = 5.0  # per second per worker; limited units run 210 ms apart on their own worker
_LIMITED_SPACING_MS = 210.0
_KEY_KINDS = frozenset({"stuck", "wrong_outcome", "duplicate_effect"})
_CHORD_KINDS = frozenset({"callback_duplicated", "callback_missing", "premature_callback"})
_RUN_KINDS = frozenset({"not_recovered", "slow_recovery", "slow_throughput_recovery"})


@dataclass(frozen=True, slots=True)
class UnitPlan:
    """One workload unit. Fields other than `kind` apply to the kinds named in their comment."""

    kind: str
    retries: int = 1  # retry: retries before success (0..MAX_RETRIES)
    steps: int = 2  # chain: number of steps
    headers: int = 2  # chord: header tasks
    kill_scope: str = "child"  # killed: "child" (worker_lost) or "worker" (kill_worker fault)
    effect_before_kill: bool = False  # killed: the first execution applied the effect before dying
    executed: bool = True  # maybe_published: the indeterminate publish ran anyway

    def __post_init__(self) -> None:
        if self.kind not in UNIT_KINDS:
            raise ValueError(f"unknown unit kind {self.kind!r}: use one of {UNIT_KINDS}")
        if self.kill_scope not in ("child", "worker"):
            raise ValueError(f"kill_scope must be 'child' or 'worker', got {self.kill_scope!r}")


@dataclass(frozen=True, slots=True)
class Injection:
    """Inject anomaly `kind` into the eligible unit number `target` (modulo their count);
    global kinds (`GLOBAL_INJECTIONS`) ignore the target."""

    kind: str
    target: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INJECTIONS and self.kind not in GLOBAL_INJECTIONS:
            raise ValueError(f"unknown injection {self.kind!r}: use one of {sorted(INJECTIONS)} "
                             f"or {list(GLOBAL_INJECTIONS)}")


@dataclass(slots=True)
class SyntheticRun:
    """The ops, the expectations they were generated under, and the violations to report."""

    ops: list[Op]
    exp: Expectations
    expected: frozenset[tuple[str, str, str]]
    applied: list[tuple[str, int | None]] = field(default_factory=list)  # (injection, unit index)


class _Worker:
    __slots__ = ("hostname", "main", "pid")

    def __init__(self, name: str, pid: int) -> None:
        self.hostname = f"celery@{name}"
        self.pid = pid
        self.main = f"worker-{pid}"

    def child(self, c: int) -> tuple[str, int]:
        cpid = self.pid * 10 + c
        return f"{self.main}.child-{cpid}", cpid


class _Builder:
    def __init__(self, run_id: str, acks_late: bool, reject: bool, rng: random.Random) -> None:
        self.run_id = run_id
        self.rng = rng
        self.acks_late = acks_late
        self.reject = reject
        self.events: list[tuple[int, int, str, OpType, str, dict[str, Any], str | None]] = []
        self.expected: set[tuple[str, str, str]] = set()
        self.outcomes: dict[str, str] = {}
        self.workers = [_Worker(f"w{i}", 100 + i) for i in range(1, 4)]
        self.limited_worker = _Worker("wl", 190)
        self.producer = "producer-1-4100"
        self.n_tasks = 0
        self.n_kill_hosts = 0
        self.n_faults = 0

    # -- primitives -----------------------------------------------------------------------------

    def op(self, t_ms: float, process: str, typ: OpType, f: str, value: dict[str, Any],
           error: str | None = None) -> None:
        self.events.append((int(t_ms * 1_000_000), len(self.events), process, typ, f, value, error))

    def new_tid(self) -> str:
        tid = f"{self.run_id}-t{self.n_tasks}"
        self.n_tasks += 1
        return tid

    def base(self, tid: str, key: str | None, name: str, run_id: str | None = None) -> dict[str, Any]:
        return {"task_id": tid, "name": name, "key": key, "run_id": run_id or self.run_id}

    def publish(self, t: float, tid: str, key: str | None, name: str, process: str | None = None,
                attempt: int = 0, run_id: str | None = None, result: OpType = OpType.OK) -> None:
        v = self.base(tid, key, name, run_id) | {"attempt": attempt}
        self.op(t, process or self.producer, OpType.INVOKE, F.PUBLISH, v)
        self.op(t + 0.5, process or self.producer, result, F.PUBLISH, v,
                error="timeout" if result is OpType.INFO else None)

    def receive(self, t: float, w: _Worker, tid: str, key: str | None, name: str, attempt: int = 0,
                redelivered: bool = False, run_id: str | None = None) -> None:
        v = self.base(tid, key, name, run_id) | {"attempt": attempt, "redelivered": redelivered,
                                                 "hostname": w.hostname, "pid": w.pid}
        self.op(t, w.main, OpType.OK, F.RECEIVE, v)

    def start(self, t: float, w: _Worker, c: int, tid: str, key: str | None, name: str, attempt: int = 0,
              run_id: str | None = None, chord_id: str | None = None) -> str:
        proc, cpid = w.child(c)
        v = self.base(tid, key, name, run_id) | {"attempt": attempt, "hostname": w.hostname, "pid": cpid,
                                                 "chord_id": chord_id}
        self.op(t, proc, OpType.INVOKE, F.EXECUTE, v)
        return proc

    def finish(self, t: float, proc: str, tid: str, key: str | None, name: str, typ: OpType = OpType.OK,
               state: str = "SUCCESS", attempt: int = 0, run_id: str | None = None) -> None:
        v = self.base(tid, key, name, run_id) | {"attempt": attempt, "state": state}
        self.op(t, proc, typ, F.EXECUTE, v)

    def effect(self, t: float, proc: str, tid: str, key: str, kind: str, duplicate: bool,
               run_id: str | None = None) -> None:
        self.op(t, proc, OpType.OK, F.EFFECT, {"key": key, "kind": kind, "duplicate": duplicate, "task_id": tid,
                                               "run_id": run_id or self.run_id})

    def pick(self) -> tuple[_Worker, int]:
        return self.rng.choice(self.workers), self.rng.randrange(4)

    def expect(self, checker: str, kind: str, ident: str) -> None:
        self.expected.add((checker, kind, ident))

    def fault(self, t_start: float, t_stop: float | None, kind: str, **value: Any) -> str:
        fid = f"f{self.n_faults}"
        self.n_faults += 1
        v = {"kind": kind, "fault_id": fid, **value}
        self.op(t_start - 0.1, "nemesis", OpType.INVOKE, F.FAULT_START, v)
        self.op(t_start, "nemesis", OpType.OK, F.FAULT_START, v)
        if t_stop is not None:
            self.op(t_stop, "nemesis", OpType.INVOKE, F.FAULT_STOP, {"kind": kind, "fault_id": fid})
            self.op(t_stop + 0.1, "nemesis", OpType.OK, F.FAULT_STOP, {"kind": kind, "fault_id": fid})
        return fid

    def build(self) -> list[Op]:
        self.events.sort(key=lambda e: (e[0], e[1]))
        return [Op(i, t, p, typ, f, v, err) for i, (t, _s, p, typ, f, v, err) in enumerate(self.events)]

    # -- units ----------------------------------------------------------------------------------

    def simple(self, t0: float, key: str, inj: str | None, name: str = "tasks.simple",
               w: _Worker | None = None, run_id: str | None = None) -> float:
        tid = self.new_tid()
        self.outcomes.setdefault(key, "complete")
        self.publish(t0, tid, key, name, run_id=run_id)
        if w is None:
            w, c = self.pick()
        else:
            c = 0
        if inj == "drop_execution":
            self.expect("lost_tasks", "lost", tid)
            self.expect("liveness", "stuck", key)
            return t0 + 1
        self.receive(t0 + 1, w, tid, key, name, run_id=run_id)
        proc = self.start(t0 + 2, w, c, tid, key, name, run_id=run_id)
        self.effect(t0 + 3, proc, tid, key, "write", False, run_id=run_id)
        if inj == "duplicate_effect":
            self.effect(t0 + 3.5, proc, tid, key, "write", False)
            self.expect("duplicates", "duplicate_effect", key)
        self.finish(t0 + 4, proc, tid, key, name, run_id=run_id)
        if inj == "dlq_completed":
            self.op(t0 + 5, proc, OpType.OK, F.DLQ, self.base(tid, key, name) | {"reason": "injected"})
            self.expect("dlq", "completed_and_dlq", tid)
        return t0 + 5

    def _attempts(self, t: float, tid: str, key: str, name: str, n_attempts: int, inj: str | None,
                  last_ok: bool) -> tuple[float, str]:
        """Attempts 0..n_attempts-1; all but the last ask for a retry. Returns (end, last process)."""
        proc = ""
        for a in range(n_attempts):
            w, c = self.pick()
            self.receive(t, w, tid, key, name, attempt=a)
            proc = self.start(t + 1, w, c, tid, key, name, attempt=a)
            if a == n_attempts - 1:
                if last_ok:
                    self.effect(t + 2, proc, tid, key, "write", False)
                    self.finish(t + 3, proc, tid, key, name, attempt=a)
                else:
                    self.finish(t + 3, proc, tid, key, name, OpType.FAIL, "FAILURE", attempt=a)
                return t + 3, proc
            lo, hi = POLICY.delay_bounds(a) or (0.0, 0.0)
            countdown = round(self.rng.uniform(lo, hi), 3)
            delay = countdown + self.rng.uniform(0.001, 0.05)
            if inj == "bad_countdown" and a == 0:
                countdown = hi + 0.5
                delay = countdown + 0.01
                self.expect("retries", "bad_countdown", tid)
            elif inj == "early_retry" and a == 0:
                countdown = hi
                delay = countdown - 0.5
                self.expect("retries", "retried_too_early", tid)
            self.op(t + 2, proc, OpType.OK, F.RETRY, self.base(tid, key, name) | {"attempt": a, "countdown": countdown})
            self.publish(t + 2.1, tid, key, name, process=proc, attempt=a + 1)
            self.finish(t + 2.8, proc, tid, key, name, OpType.FAIL, "RETRY", attempt=a)
            t = t + 2 + delay * 1000
        return t, proc

    def retry(self, t0: float, key: str, plan: UnitPlan, inj: str | None) -> float:
        tid = self.new_tid()
        name = "tasks.flaky"
        self.outcomes[key] = "complete"
        self.publish(t0, tid, key, name)
        retries = min(max(plan.retries, 0), MAX_RETRIES)
        if inj == "extra_retry":
            retries = MAX_RETRIES + 1
            self.expect("retries", "too_many_attempts", tid)
        end, _ = self._attempts(t0 + 1, tid, key, name, retries + 1, inj, last_ok=True)
        return end

    def dlq(self, t0: float, key: str, inj: str | None) -> float:
        tid = self.new_tid()
        name = "tasks.doomed"
        self.outcomes[key] = "dlq"
        self.publish(t0, tid, key, name)
        end, proc = self._attempts(t0 + 1, tid, key, name, MAX_RETRIES + 1, None, last_ok=False)
        if inj == "missing_dlq":
            self.expect("dlq", "missing_from_dlq", tid)
            self.expect("liveness", "wrong_outcome", key)
            return end
        v = self.base(tid, key, name) | {"reason": "max retries exceeded"}
        self.op(end + 0.5, proc, OpType.OK, F.DLQ, v)
        if inj == "dlq_twice":
            self.op(end + 0.7, proc, OpType.OK, F.DLQ, v)
            self.expect("dlq", "duplicated_in_dlq", tid)
        return end + 1

    def chain(self, t0: float, key: str, plan: UnitPlan) -> float:
        self.outcomes[key] = "complete"
        name = "tasks.step"
        tid = self.new_tid()
        self.publish(t0, tid, key, name)
        t = t0 + 1
        for i in range(max(plan.steps, 1)):
            w, c = self.pick()
            self.receive(t, w, tid, key, name)
            proc = self.start(t + 1, w, c, tid, key, name)
            self.effect(t + 2, proc, tid, key, f"step{i}", False)
            nxt = self.new_tid() if i < plan.steps - 1 else None
            if nxt is not None:
                self.publish(t + 2.5, nxt, key, name, process=proc)
            self.finish(t + 3.5, proc, tid, key, name)
            if nxt is None:
                return t + 4
            tid, t = nxt, t + 4

        return t

    def chord(self, t0: float, key: str, plan: UnitPlan, inj: str | None) -> float:
        self.outcomes[key] = "complete"
        n = max(plan.headers, 1)
        cb = self.new_tid()
        headers = [self.new_tid() for _ in range(n)]
        ends: list[tuple[float, str, str]] = []
        slots = self.rng.sample([(w, c) for w in self.workers for c in range(4)], min(n, 12))
        for j, h in enumerate(headers):
            self.publish(t0 + 0.1 * j, h, key, "tasks.header")
            w, c = slots[j % len(slots)]  # concurrent headers on distinct pool children
            start = t0 + 1 + self.rng.uniform(0, 3)
            end = t0 + 10 + 5 * j + self.rng.uniform(0, 2)  # header j ends ~5 ms after header j-1
            self.receive(start - 0.5, w, h, key, "tasks.header")
            proc = self.start(start, w, c, h, key, "tasks.header", chord_id=cb)
            self.effect(start + 0.5, proc, h, key, f"h{j}", False)
            ends.append((end, proc, h))
        ends.sort()
        # The last header publishes the callback while completing (on_chord_part_return runs
        # before task_success), so the callback may even start before that header's ok.
        publisher = ends[0] if inj == "premature_callback" and n >= 2 else ends[-1]
        if inj == "premature_callback" and n >= 2:
            self.expect("chords", "premature_callback", cb)
        for end, proc, h in ends:
            self.finish(end, proc, h, key, "tasks.header")
        p_end, p_proc, _ = publisher
        self.publish(p_end - 0.6, cb, key, "tasks.callback", process=p_proc)
        race = self.rng.random() < 0.3 and inj != "premature_callback"
        cb_start = p_end - 0.05 if race else p_end + 1 + self.rng.uniform(0, 2)
        w, c = self.pick()
        self.receive(cb_start - 0.02, w, cb, key, "tasks.callback")
        proc = self.start(cb_start, w, c, cb, key, "tasks.callback")
        self.effect(cb_start + 0.5, proc, cb, key, "callback", False)
        self.finish(cb_start + 1, proc, cb, key, "tasks.callback")
        end = max(ends[-1][0], cb_start + 1)
        if inj == "callback_twice":
            # The chord fires twice: the callback is published again (failure mode 14).
            self.publish(end + 4, cb, key, "tasks.callback")
            w2, c2 = self.pick()
            self.receive(end + 5, w2, cb, key, "tasks.callback")
            proc2 = self.start(end + 6, w2, c2, cb, key, "tasks.callback")
            self.finish(end + 7, proc2, cb, key, "tasks.callback")
            self.expect("chords", "callback_duplicated", cb)
            end += 8
        return end + 1

    def killed(self, t0: float, key: str, plan: UnitPlan, inj: str | None) -> float:
        tid = self.new_tid()
        name = "tasks.victim"
        self.outcomes[key] = "complete"
        self.publish(t0, tid, key, name)
        if plan.kill_scope == "child":
            w, c = self.pick()
            self.receive(t0 + 1, w, tid, key, name)
            proc = self.start(t0 + 2, w, c, tid, key, name)
            if plan.effect_before_kill:
                self.effect(t0 + 3, proc, tid, key, "write", False)
            _, cpid = w.child(c)
            self.op(t0 + 5, w.main, OpType.OK, F.WORKER_LOST,
                    self.base(tid, key, name) | {"exitcode": -9, "child_pid": cpid, "child_process": proc})
            self.finish(t0 + 5.1, proc, tid, key, name, OpType.INFO, "WORKER_LOST")
            self.op(t0 + 5.2, w.main, OpType.OK, F.REJECT,
                    self.base(tid, key, name) | {"requeue": self.acks_late and self.reject})
        else:
            self.n_kill_hosts += 1
            w = _Worker(f"wk{self.n_kill_hosts}", 500 + self.n_kill_hosts)
            self.receive(t0 + 1, w, tid, key, name)
            proc = self.start(t0 + 2, w, 0, tid, key, name)
            if plan.effect_before_kill:
                self.effect(t0 + 3, proc, tid, key, "write", False)
            # As the nemesis records a kill_worker: its driver declares that it cuts running tasks.
            self.fault(t0 + 5, t0 + 50, "kill_worker", hostname=w.hostname, signal="SIGKILL", scope="worker",
                       cuts_running_tasks=True)
        redeliver = self.acks_late and (plan.kill_scope == "worker" or self.reject)
        if not redeliver:
            # The configuration lets the kill lose the task: the default claim (at-least-once)
            # is violated, and each checker that sees it must say so.
            self.expect("redelivery", "not_redelivered", tid)
            self.expect("lost_tasks", "lost", tid)
            self.expect("liveness", "stuck", key)
            return t0 + 52
        if inj == "not_redelivered":
            self.expect("redelivery", "not_redelivered", tid)
            self.expect("lost_tasks", "lost", tid)
            self.expect("liveness", "stuck", key)
            return t0 + 52
        w2, c2 = self.pick()
        self.receive(t0 + 10, w2, tid, key, name, redelivered=True)
        proc2 = self.start(t0 + 11, w2, c2, tid, key, name)
        self.effect(t0 + 12, proc2, tid, key, "write", plan.effect_before_kill)
        self.finish(t0 + 13, proc2, tid, key, name)
        return t0 + 52

    def overlap(self, t0: float, key: str) -> float:
        tid = self.new_tid()
        name = "tasks.slow"
        self.outcomes[key] = "complete"
        self.publish(t0, tid, key, name)
        w1, c1 = self.pick()
        w2, c2 = self.pick()
        self.receive(t0 + 1, w1, tid, key, name)
        p1 = self.start(t0 + 2, w1, c1, tid, key, name)
        self.effect(t0 + 3, p1, tid, key, "write", False)
        self.receive(t0 + 20, w2, tid, key, name, redelivered=True)
        p2 = self.start(t0 + 21, w2, c2 if p1 != w2.child(c2)[0] else (c2 + 1) % 4, tid, key, name)
        self.effect(t0 + 25, p2, tid, key, "write", True)
        self.finish(t0 + 30, p2, tid, key, name)
        self.finish(t0 + 60, p1, tid, key, name)
        return t0 + 61

    def maybe_published(self, t0: float, key: str, plan: UnitPlan) -> float:
        tid = self.new_tid()
        name = "tasks.simple"
        self.publish(t0, tid, key, name, result=OpType.INFO)
        if not plan.executed:
            return t0 + 1
        self.outcomes[key] = "complete"
        w, c = self.pick()
        self.receive(t0 + 2, w, tid, key, name)
        proc = self.start(t0 + 3, w, c, tid, key, name)
        self.effect(t0 + 4, proc, tid, key, "write", False)
        self.finish(t0 + 5, proc, tid, key, name)
        return t0 + 6

    def never_published(self, t0: float) -> float:
        tid = self.new_tid()
        w, c = self.pick()
        self.receive(t0, w, tid, None, "tasks.ghost")
        proc = self.start(t0 + 1, w, c, tid, None, "tasks.ghost")
        self.finish(t0 + 2, proc, tid, None, "tasks.ghost")
        self.expect("lost_tasks", "unexpected", tid)
        return t0 + 3


def synthesize(plans: Sequence[UnitPlan], injections: Sequence[Injection] = (), *, config: str = "late_reject",
               partitions: int = 1, seed: int = 0, run_id: str = "run-1") -> SyntheticRun:
    """Generate the history of `plans` with `injections` under ack `config` (see `CONFIGS`).

    `partitions` non-kill faults (``partition_broker``, healed) are spread over the run; a final
    sentinel unit is always published after the last heal, so recovery is observable.

    Example:
        >>> run = synthesize([UnitPlan("dlq")], [Injection("dlq_twice")])
        >>> sorted(run.expected)
        [('dlq', 'duplicated_in_dlq', 'run-1-t0')]
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}: use one of {sorted(CONFIGS)}")
    acks_late, reject = CONFIGS[config]
    rng = random.Random(seed)
    b = _Builder(run_id, acks_late, reject, rng)
    assigned: dict[int, str] = {}
    applied: list[tuple[str, int | None]] = []
    globals_: list[str] = []
    for inj in injections:
        if inj.kind in GLOBAL_INJECTIONS:
            if inj.kind not in globals_:
                globals_.append(inj.kind)
                applied.append((inj.kind, None))
            continue
        eligible = [i for i, p in enumerate(plans) if p.kind in INJECTIONS[inj.kind] and i not in assigned
                    and _eligible(inj.kind, p, acks_late, reject)]
        if eligible:
            i = eligible[inj.target % len(eligible)]
            assigned[i] = inj.kind
            applied.append((inj.kind, i))

    b.op(0, "harness", OpType.OK, F.PHASE, {"phase": "load_start"})
    end = 1.0
    t_limited = 1.0
    for i, plan in enumerate(plans):
        key = f"k{i}"
        unit_inj = assigned.get(i)
        t0 = 1.0 + i * 7.0 + rng.uniform(0, 3)
        if plan.kind == "simple":
            e = b.simple(t0, key, unit_inj)
        elif plan.kind == "limited":
            e = b.simple(t_limited, key, None, name=LIMITED, w=b.limited_worker)
            t_limited += _LIMITED_SPACING_MS
        elif plan.kind == "retry":
            e = b.retry(t0, key, plan, unit_inj)
        elif plan.kind == "dlq":
            e = b.dlq(t0, key, unit_inj)
        elif plan.kind == "chain":
            e = b.chain(t0, key, plan)
        elif plan.kind == "chord":
            e = b.chord(t0, key, plan, unit_inj)
        elif plan.kind == "killed":
            e = b.killed(t0, key, plan, unit_inj)
        elif plan.kind == "overlap":
            e = b.overlap(t0, key)
        else:
            e = b.maybe_published(t0, key, plan)
        end = max(end, e)
    span = max(end, 10.0)
    for _ in range(partitions):
        s = rng.uniform(0, span * 0.8)
        b.fault(s + 0.2, s + 0.2 + rng.uniform(5, 200), "partition_broker", proxy="worker->broker")
    end = max(end, max((e[0] / 1_000_000 for e in b.events if e[4] == F.FAULT_STOP), default=0.0)) + 5
    if "never_published" in globals_:
        end = b.never_published(end) + 1
    if "foreign_run" in globals_:
        n_before = b.n_tasks
        end = b.simple(end, "k-old", None, run_id="run-0") + 1
        b.outcomes.pop("k-old", None)
        b.expect("lost_tasks", "unexpected", f"{run_id}-t{n_before}")
    if "rate_burst" in globals_:
        for j in range(int(RATE) + 2):
            b.simple(t_limited + 10 * j, f"k-burst-{j}", None, name=LIMITED, w=b.limited_worker)
        b.expect("rate_limits", "rate_exceeded", f"{b.limited_worker.hostname}/{LIMITED}")
        end = max(end, t_limited + 10 * (int(RATE) + 2) + 10)
    end = b.simple(end + 1, "k-sentinel", None) + 1  # published after the last heal
    if "unhealed_fault" in globals_:
        fid = b.fault(end + 1, None, "partition_broker", proxy="producer->broker")
        b.expect("recovery", "unhealed_fault", fid)
        end += 2
    for j, phase in enumerate(("heal", "quiesce", "drain", "check")):
        b.op(end + 1 + j, "harness", OpType.OK, F.PHASE, {"phase": phase})
    exp = Expectations(run_id=run_id, acks_late=acks_late, reject_on_worker_lost=reject, dead_letter_queue=True,
                       retry_policy=POLICY, rate_limits={LIMITED: RATE}, chords=True,
                       expected_outcomes=b.outcomes, max_counterexamples=10_000)
    return SyntheticRun(ops=b.build(), exp=exp, expected=frozenset(b.expected), applied=applied)


def _eligible(kind: str, plan: UnitPlan, acks_late: bool, reject: bool) -> bool:
    if kind in ("bad_countdown", "early_retry"):
        return plan.retries >= 1
    if kind == "premature_callback":
        return plan.headers >= 2
    if kind == "not_redelivered":
        return acks_late and (plan.kill_scope == "worker" or reject)
    return True


def random_plans(n: int, rng: random.Random) -> Iterator[UnitPlan]:
    """`n` unit plans in a realistic mix (mostly simple tasks), for benchmarks.

    >>> plans = list(random_plans(100, random.Random(0)))
    >>> len(plans), {p.kind for p in plans} <= set(UNIT_KINDS)
    (100, True)
    """
    kinds = ("simple",) * 12 + ("retry", "retry", "chain", "chord", "dlq", "overlap", "maybe_published", "killed",
                                "limited")
    for _ in range(n):
        kind = rng.choice(kinds)
        yield UnitPlan(kind, retries=rng.randint(0, MAX_RETRIES), steps=rng.randint(2, 4), headers=rng.randint(2, 5),
                       kill_scope=rng.choice(("child", "worker")), effect_before_kill=rng.random() < 0.5,
                       executed=rng.random() < 0.5)


def anomaly_id(kind: str, ce: Mapping[str, Any]) -> str:
    """The id a counterexample of `kind` is reported under (see the module docstring).

    >>> anomaly_id("lost", {"task_id": "t1", "key": "k1"}), anomaly_id("stuck", {"key": "k1"})
    ('t1', 'k1')
    """
    if kind in _KEY_KINDS:
        return str(ce.get("key"))
    if kind in _CHORD_KINDS:
        return str(ce.get("chord_id"))
    if kind == "rate_exceeded":
        return f"{ce.get('hostname')}/{ce.get('name')}"
    if kind == "unhealed_fault":
        return str(ce.get("fault_id"))
    if kind in _RUN_KINDS:
        return "-"
    return str(ce.get("task_id"))


def reported_violations(verdicts: Mapping[str, Verdict]) -> frozenset[tuple[str, str, str]]:
    """Every violation the verdicts report, as ``(checker, kind, id)``.

    >>> reported_violations({})
    frozenset()
    """
    return frozenset((name, ce["kind"], anomaly_id(ce["kind"], ce))
                     for name, v in verdicts.items() for ce in v.violations())
