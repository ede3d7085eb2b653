"""The failure-mode scenarios' toolkit: a probe workload on the sample system and one call per run.

Responsibility: run the sample system's ``probes.work`` task (``sample_system/services/
chaos_probes.py``) under one fault schedule, on one configuration variant, with real workers,
and return the `RunResult`. Each scenario module states a failure mode as a pair: the
vulnerable variant and the safe one, the same fault, and what the harness must say about each.

`ProbeWorkload` is a `harness.workload.Workload` with the kind ``probe``: each unit publishes
one ``probes.work`` task (work for `seconds`, effect ``probe.done`` before or after the work,
optional countdown) and must leave that effect exactly once. With ``failing=True`` it also has
the kind ``failing``: a probe that fails for good and must land in the dead-letter queue, so
the DLQ claim is exercised (the workload then says ``dead_letter_queue = True``). With
``canvases=("chain_mid_fails", ...)`` each unit is instead one small canvas of the error-path
matrix (``sample_system.services.chaos_probes.CANVAS_SHAPES``: one step fails for good, an
errback is linked), expected in the DLQ, whose effects are its succeeding probes and exactly one
``probe.errback``. ``first_seconds`` makes a probe work that long on its first delivery only (it
hangs once, past its time limit, and is quick when redelivered); ``hanging_seconds`` adds the
kind ``hanging``: a probe that works that long on every delivery, so it hits its time limit
every time and must end in the dead-letter queue (a poison message). Queue
declaration, the effect store and the dead-letter queue are the sample system's own
(`SampleWorkload`).

Example:
    >>> from sample_system import Settings
    >>> w = ProbeWorkload(Settings(), seconds=2.0, countdown=5.0)
    >>> [(u.key, u.expected, u.effects) for u in w.units(1, "r1")]
    [('r1:probe:0', 'complete', ('probe.done:r1:probe:0',))]
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Mapping
from typing import Any

from harness.errors import ConfigError
from harness.faults import Schedule
from harness.run import Run, RunResult
from harness.workers import WorkerSpec
from harness.workload import KEY_HEADER, RUN_ID_HEADER, DLQEntry, EffectRecord, Unit
from sample_system.deploy import prepare
from sample_system.factory import make_app
from sample_system.services.chaos_probes import (
    CANVAS_SHAPES,
    COLLECT_EFFECT,
    PROBE_EFFECT,
    PROBE_TASK,
    canvas,
    canvas_effects,
    chain_of_probes,
    chord_of_probes,
)
from sample_system.settings import Settings
from sample_system.topology import DEFAULT
from sample_system.workload import SampleWorkload

#: The claim "no task is ever lost, whatever dies" (what late acks + reject-on-worker-lost give).
AT_LEAST_ONCE: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}
#: The claim "each task runs once" (on top of at-least-once): a duplicate execution is a violation.
EXACTLY_ONCE: dict[str, Any] = {**AT_LEAST_ONCE, "allow_duplicate_executions": False}


class ProbeWorkload:
    """Units of ``probes.work`` on the sample system (see the module docstring)."""

    def __init__(self, settings: Settings, *, seconds: float = 0.0, effect: str = "after",
                 countdown: float | None = None, confirm_timeout: float | None = None,
                 failing: bool = False, chord_parts: int = 0, chain_parts: int = 0,
                 canvases: tuple[str, ...] = (), errback_seconds: float = 0.0,
                 unlock_max_retries: int | None = None, first_seconds: float | None = None,
                 hanging_seconds: float | None = None) -> None:
        if effect not in ("before", "after"):
            raise ConfigError(f"effect={effect!r}: the probe applies its effect 'before' or 'after' its work")
        unknown = [c for c in canvases if c not in CANVAS_SHAPES]
        if unknown:
            raise ConfigError(f"canvases {unknown}: use shapes of {sorted(CANVAS_SHAPES)}")
        self.settings = settings
        self.seconds = float(seconds)
        self.effect = effect
        self.countdown = countdown
        self.confirm_timeout = confirm_timeout
        self.chord_parts = chord_parts
        self.chain_parts = chain_parts
        self.canvases = tuple(canvases)
        self.errback_seconds = float(errback_seconds)
        self.unlock_max_retries = unlock_max_retries
        self.first_seconds = first_seconds
        self.hanging_seconds = hanging_seconds
        self.kinds: tuple[str, ...] = (self.canvases if canvases else ("chord",) if chord_parts
                                       else ("chain",) if chain_parts
                                       else ("probe", "failing") if failing
                                       else ("probe", "hanging") if hanging_seconds is not None else ("probe",))
        if failing or canvases or hanging_seconds is not None:
            self.dead_letter_queue = True  # read by Run: the DLQ claim is part of the expectations
        self._base = SampleWorkload(settings, kinds=("order",))
        self.submitted: dict[str, str] = {}  # unit key -> task id

    def setup(self, app: Any) -> None:
        self._base.setup(app)

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        if self.canvases:
            return [Unit(key=f"{run_id}:{shape}:{i}", kind=shape, expected="dlq", run_id=run_id,
                         effects=canvas_effects(shape, f"{run_id}:{shape}:{i}"))
                    for i in range(n_per_kind) for shape in self.canvases]
        if self.chain_parts:
            return [Unit(key=f"{run_id}:chain:{i}", kind="chain", expected="complete", run_id=run_id,
                         effects=tuple(f"{PROBE_EFFECT}:{run_id}:chain:{i}:p{j}" for j in range(self.chain_parts)))
                    for i in range(n_per_kind)]
        if self.chord_parts:
            return [Unit(key=f"{run_id}:chord:{i}", kind="chord", expected="complete", run_id=run_id,
                         effects=(*(f"{PROBE_EFFECT}:{run_id}:chord:{i}:p{j}" for j in range(self.chord_parts)),
                                  f"{COLLECT_EFFECT}:{run_id}:chord:{i}")) for i in range(n_per_kind)]
        probes = [Unit(key=f"{run_id}:probe:{i}", kind="probe", expected="complete",
                       effects=(f"{PROBE_EFFECT}:{run_id}:probe:{i}",), run_id=run_id) for i in range(n_per_kind)]
        bad_kind = next((k for k in ("failing", "hanging") if k in self.kinds), None)
        if bad_kind is None:
            return probes
        failing = [Unit(key=f"{run_id}:{bad_kind}:{i}", kind=bad_kind, expected="dlq", run_id=run_id)
                   for i in range(n_per_kind)]
        # The first probe runs when the fault starts; the last unit is a probe because a run
        # submits its last units after the heal, as recovery probes that must complete.
        return probes[:1] + failing + probes[1:]

    def submit(self, app: Any, unit: Unit) -> str:
        task_id = str(uuid.uuid4())
        if unit.kind in CANVAS_SHAPES:
            res = canvas(app, unit.kind, unit.key, headers={KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id},
                         seconds=self.seconds, errback_seconds=self.errback_seconds,
                         unlock_max_retries=self.unlock_max_retries).apply_async()
            self.submitted[unit.key] = str(res.id)
            return str(res.id)
        if unit.kind == "chain":
            chain_of_probes(app, unit.key, self.chain_parts, seconds=self.seconds, first_id=task_id,
                            headers={KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id}).apply_async()
            self.submitted[unit.key] = task_id
            return task_id
        if unit.kind == "chord":
            chord_of_probes(app, unit.key, self.chord_parts, seconds=self.seconds, callback_id=task_id,
                            headers={KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id}).apply_async()
            self.submitted[unit.key] = task_id
            return task_id
        options: dict[str, Any] = {}
        if self.countdown is not None:
            options["countdown"] = self.countdown
        if self.confirm_timeout is not None:
            options["confirm_timeout"] = self.confirm_timeout  # with publisher confirms: wait this long at most
        kwargs: dict[str, Any] = {"key": unit.key, "seconds": self.seconds, "effect": self.effect,
                                  "fail": unit.kind == "failing"}
        if unit.kind == "hanging":
            kwargs["seconds"] = self.hanging_seconds
        elif self.first_seconds is not None:
            kwargs["first_seconds"] = self.first_seconds
        app.send_task(PROBE_TASK, kwargs=kwargs,
                      task_id=task_id, headers={KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id},
                      queue=DEFAULT, **options)
        self.submitted[unit.key] = task_id
        return task_id

    def effects(self) -> dict[str, list[EffectRecord]]:
        return self._base.effects()

    def dlq_entries(self, app: Any) -> list[DLQEntry]:
        return self._base.dlq_entries(app)


def probe_run(stack: Any, *, variant: Mapping[str, Any] | None = None, seconds: float = 0.0,
              effect: str = "after", countdown: float | None = None, confirm_timeout: float | None = None,
              failing: bool = False, chord_parts: int = 0, chain_parts: int = 0, n: int = 2,
              canvases: tuple[str, ...] = (), errback_seconds: float = 0.0, unlock_max_retries: int | None = None,
              first_seconds: float | None = None, hanging_seconds: float | None = None,
              schedule: Schedule | None = None, expectations: Mapping[str, Any] | None = None,
              pool: str = "prefork", concurrency: int = 2, worker_settings: Mapping[str, Any] | None = None,
              workers: int = 1, worker_args: tuple[str, ...] = (),
              **run_options: Any) -> tuple[RunResult, ProbeWorkload]:
    """Deploy the sample system with `variant` (Settings overrides) on `stack`, run `n` probes
    under `schedule` and return the result and the workload (its ``submitted`` task ids).

    Workers consume only the ``default`` queue, where the probes go; `worker_settings` are
    Celery settings on top of the sample system's (e.g. ``broker_transport_options``), and
    `worker_args` extra ``celery worker`` options (e.g. ``--without-heartbeat``).
    `failing` adds `n` units that fail for good and must be dead-lettered; `canvases` makes
    each unit an error-path canvas instead (`n` of each shape; see `ProbeWorkload`);
    `hanging_seconds` adds `n` probes that work that long on every delivery (past the
    variant's hard ``time_limit``) and must be dead-lettered too.
    """
    fresh_broker(stack)
    with prepare(stack, concurrency=concurrency, **dict(variant or {})) as d:
        workload = ProbeWorkload(d.workload.settings, seconds=seconds, effect=effect, countdown=countdown,
                                 confirm_timeout=confirm_timeout, failing=failing, chord_parts=chord_parts,
                                 chain_parts=chain_parts, canvases=canvases, errback_seconds=errback_seconds,
                                 unlock_max_retries=unlock_max_retries, first_seconds=first_seconds,
                                 hanging_seconds=hanging_seconds)
        specs = [WorkerSpec(app=d.app, pool=pool, concurrency=concurrency, queues=(DEFAULT,), env=dict(d.env),
                            hostname=f"w{i + 1}@127.0.0.1", settings=dict(worker_settings or {}),
                            extra_args=tuple(worker_args))
                 for i in range(workers)]
        options: dict[str, Any] = {"quiesce_timeout_s": 30.0, "log": print, **run_options}
        # The producer is a new app built from the variant's settings: the module-level
        # `sample_system.app` of this process is built once from its environment, so a
        # variant (confirm_publish=False...) would not reach it, and its cached producer pool
        # would keep publishing to the broker of an earlier run.
        producer = make_app(d.workload.settings)
        result = Run(stack, app=producer, workload=workload, workers=specs, schedule=schedule, n_per_kind=n,
                     expectations=dict(expectations) if expectations is not None else None, **options).execute()
        # Result objects the producer made (chords make several, some in reference cycles) say
        # goodbye to the result backend when collected: let them do it while the stack is up.
        gc.collect()
    print(result.summary())
    return result, workload


def violations(result: RunResult, checker: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The violations (not allowed anomalies) `checker` reported, optionally of one `kind`."""
    return [c for c in result.verdict(checker).violations() if kind is None or c.get("kind") == kind]


def redis_transport_options(visibility_timeout: float, *, restore_every_s: int = 1,
                            socket_timeout: float | None = 10.0) -> dict[str, Any]:
    """``broker_transport_options`` for a Redis broker with a `visibility_timeout`, swept every
    `restore_every_s` seconds (kombu's default sweep is every 10 x 10 s: too slow for a scenario
    that compresses an hour into seconds). ``socket_timeout=None`` leaves kombu's default (none)."""
    opts: dict[str, Any] = {"visibility_timeout": visibility_timeout, "unacked_restore_interval": restore_every_s,
                            "unacked_restore_throttle": 1, "socket_connect_timeout": 10.0}
    if socket_timeout is not None:
        opts["socket_timeout"] = socket_timeout
    return opts


def fresh_broker(stack: Any, queues: tuple[str, ...] = (DEFAULT,)) -> None:
    """Empty `queues` and, on a Redis broker, forget the transport's unacked messages.

    A vulnerable run may leave a message behind (unacked on Redis until its visibility timeout,
    or requeued when its worker died); the next run's workers would consume it before the
    workload's setup purges the queues.
    """
    from kombu import Connection

    with Connection(stack.urls.broker_url, connect_timeout=5, transport_options={"max_retries": 1}) as conn:
        ch = conn.channel()
        try:
            for q in queues:
                try:
                    ch.queue_purge(q)
                except Exception:  # noqa: BLE001 - a queue never declared holds nothing
                    ch = conn.channel()
            client = getattr(ch, "client", None)
            if client is not None and hasattr(ch, "unacked_key"):
                client.delete(ch.unacked_key, ch.unacked_index_key, ch.unacked_mutex_key)
        finally:
            ch.close()


def executions(result: RunResult, task_id: str) -> list[dict[str, Any]]:
    """Each execution of `task_id`: start time (s, monotonic), process, redelivered flag, outcome."""
    from harness.history import F

    starts: list[dict[str, Any]] = []
    for op in result.history or ():
        if op.f != F.EXECUTE or not isinstance(op.value, dict) or op.value.get("task_id") != task_id:
            continue
        if op.type.value == "invoke":
            starts.append({"start_s": op.time / 1e9, "process": op.process,
                           "redelivered": op.value.get("redelivered"), "outcome": None})
        else:
            for ex in reversed(starts):
                if ex["process"] == op.process and ex["outcome"] is None:
                    ex["outcome"] = op.type.value
                    ex["end_s"] = op.time / 1e9
                    break
    return starts


def fault_times(result: RunResult) -> list[float]:
    """When each fault of the run took effect (``fault_start`` ok), in monotonic seconds."""
    from harness.history import F

    return [op.time / 1e9 for op in result.history or () if op.f == F.FAULT_START and op.type.value == "ok"]


def the_fault(result: RunResult) -> Any:
    """The run's only applied fault, asserted to have bitten and been healed."""
    (applied,) = result.schedule_as_run
    assert applied.outcome == "healed", result.summary()
    return applied


def receives(result: RunResult, task_id: str) -> list[tuple[float, bool]]:
    """When the workers received `task_id` (monotonic seconds) and the redelivered flag of each."""
    from harness.history import F

    return [(op.time / 1e9, bool(op.value.get("redelivered"))) for op in result.history or ()
            if op.f == F.RECEIVE and isinstance(op.value, dict) and op.value.get("task_id") == task_id]


def stored_states(workload: ProbeWorkload, task_ids: list[str]) -> dict[str, str]:
    """The state the result backend holds for each task id (read directly, not through a proxy)."""
    from celery.result import AsyncResult

    app = make_app(workload.settings)  # the deployment's settings carry the stack's direct backend URL
    try:
        return {tid: AsyncResult(tid, app=app).state for tid in task_ids}
    finally:
        app.close()


def fault_window(result: RunResult) -> tuple[float, float]:
    """(applied, healed) of the run's only time-bounded fault, in monotonic seconds."""
    from harness.history import F

    start = [op.time / 1e9 for op in result.history or () if op.f == F.FAULT_START and op.type.value == "ok"]
    stop = [op.time / 1e9 for op in result.history or () if op.f == F.FAULT_STOP and op.type.value == "ok"]
    assert len(start) == 1 and len(stop) == 1, (start, stop)
    return start[0], stop[0]


def publishes(result: RunResult) -> dict[str, tuple[float, float | None, str]]:
    """Per task id: (publish invoke time, completion time or None, completion type) of the producer."""
    from harness.history import F

    out: dict[str, tuple[float, float | None, str]] = {}
    for op in result.history or ():
        if op.f != F.PUBLISH or not op.process.startswith("producer") or not isinstance(op.value, dict):
            continue
        tid = str(op.value.get("task_id"))
        if op.type.value == "invoke":
            out[tid] = (op.time / 1e9, None, "invoke")
        elif tid in out:
            out[tid] = (out[tid][0], op.time / 1e9, op.type.value)
    return out


def rabbitmq_stack(**conf: Any) -> Any:
    """A local stack of its own whose RabbitMQ runs with the ``rabbitmq.conf`` settings `conf`.

    For a mode that needs a broker setting the session's stack does not have (RabbitMQ reads
    most of them at boot). ``consumer_timeout`` comes with a 500 ms channel tick: RabbitMQ
    3.10 checks it once per tick, 60 s by default, which would make a compressed timeout bite
    a minute late. Use it as a context manager; it costs one broker boot (about 5 s).
    """
    from harness.stack.local import LocalStack, LocalStackOptions
    from harness.stack.rabbitmq_config import RabbitMQSettings

    app_env: dict[str, object] = {"channel_tick_interval": 500} if "consumer_timeout" in conf else {}
    return LocalStack(LocalStackOptions(rabbitmq=RabbitMQSettings(conf=conf, app_env=app_env)))


def sqlite_stack() -> Any:
    """A local stack of its own whose result backend is SQLite (``db+sqlite://``, Celery's
    SQLAlchemy backend): chords there take ``celery.chord_unlock``, which polls the header's
    results, as on every SQL backend in production. RabbitMQ is the broker, as in the session's
    stack. Use it as a context manager; it costs one broker boot."""
    from harness.stack.local import LocalStack, LocalStackOptions

    return LocalStack(LocalStackOptions(result_backend="sqlite"))


def errback_calls(result: RunResult, key: str) -> list[str]:
    """The failed task id each stored ``probe.errback`` effect of unit `key` names, one per row."""
    from harness.history import F

    out = []
    for op in result.history or ():
        v = op.value if isinstance(op.value, dict) else {}
        if op.f == F.STORED_EFFECT and v.get("key") == key and v.get("kind") == "probe.errback":
            out.append(str(v.get("task_id")))
    return out
