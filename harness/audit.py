"""The static audit: which failure modes a Celery configuration is open to, before any fault runs.

Responsibility: read a Celery configuration (and, when given, the options of its registered
tasks) and list each risk it carries as a `Risk`: the failure mode it predicts (numbered as in
``docs/failure-modes.md``), the setting and the value read, the anomaly kinds the checkers report
when it bites, and the fix. `confirm` then compares those predictions with what a certification
observed: *confirmed* (a predicted anomaly was seen where the risk could bite), *refuted* (a
scenario that could make it bite ran and it did not), *not exercised* (nothing that could
provoke it ran).

Pure: reads values, starts nothing, connects to nothing. ``celery-chaos audit --app MOD:ATTR``
(`audit_main`) prints the risks; exit 0 when none has severity ``loss`` or ``duplicate``, 1 when
some has, 2 on bad input.

Example:
    >>> risks = audit_conf({"broker_url": "amqp://127.0.0.1//"})        # Celery's defaults
    >>> [(r.id, r.mode) for r in risks][:3]
    [('early_acks', 3), ('prefetch_multiplier', 9), ('no_publisher_confirms', 11)]
    >>> confirm(risks[:1], {"lost": 2}, exercised={"kill_worker_child"})[0][1]
    'confirmed'
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CONFIRMED", "NOT_EXERCISED", "REFUTED", "SEVERITIES", "STATUSES", "Risk", "audit_app", "audit_conf",
           "audit_exit_code", "audit_main", "confirm", "format_risks"]

Severity = Literal["loss", "duplicate", "stall", "info"]
#: Worst first: a risk that may lose work outranks one that may run it twice, then one that may stall it.
SEVERITIES: tuple[str, ...] = ("loss", "duplicate", "stall", "info")

CONFIRMED, REFUTED, NOT_EXERCISED = "confirmed", "refuted", "not exercised"
STATUSES: tuple[str, ...] = (CONFIRMED, REFUTED, NOT_EXERCISED)

#: Celery 5.7's defaults for the settings the audit reads (a plain dict given to `audit_conf`
#: falls back to them; a Celery ``app.conf`` carries them itself).
CELERY_DEFAULTS: dict[str, Any] = {
    "broker_url": None,
    "broker_transport": None,
    "broker_transport_options": {},
    "broker_heartbeat": 120,
    "result_backend": None,
    "result_backend_always_retry": False,
    "result_backend_max_retries": math.inf,
    "result_backend_base_sleep_between_retries_ms": 10,
    "result_backend_max_sleep_between_retries_ms": 10000,
    "task_acks_late": False,
    "task_reject_on_worker_lost": None,
    "task_acks_on_failure_or_timeout": True,
    "task_acks_on_failure": None,
    "task_acks_on_timeout": None,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_queue_type": "classic",
    "task_create_missing_queue_type": "classic",
    "task_queues": None,
    "worker_prefetch_multiplier": 4,
    "worker_disable_prefetch": False,
    "worker_pool": "prefork",
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    "worker_detect_quorum_queues": True,
}

#: kombu's visibility timeout when the transport options set none (seconds).
DEFAULT_VISIBILITY_TIMEOUT = {"redis": 3600.0, "sqs": 30.0}
#: A result-backend retry budget shorter than this is reported: outages of minutes are ordinary.
BACKEND_BUDGET_FLOOR_S = 600.0
_SCHEMES = {"amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp", "redis": "redis",
            "rediss": "redis", "redis+socket": "redis", "sentinel": "redis", "sqs": "sqs"}


@dataclass(frozen=True, slots=True)
class Risk:
    """One risk the configuration carries.

    Attributes:
        id: a short slug (``"early_acks"``).
        mode: the failure mode it predicts, numbered as in docs/failure-modes.md.
        title: what goes wrong, in one line.
        setting: the Celery setting(s) involved, with the values read.
        predicts: the anomaly kinds the checkers report when it bites (counterexample ``kind``;
            ``"kind/cause"`` narrows a duplicate execution to its attributed cause,
            ``"duplicate_execution/concurrent"`` to overlapping copies).
        fix: one sentence naming the setting and the value to give it.
        severity: ``loss`` | ``duplicate`` | ``stall`` | ``info``.
        exercised_by: fault kinds (``kind``, ``kind:mode`` or ``kind:role``) whose run can make it
            bite; empty when no fault is needed (long tasks, ETAs): then a run confirms it or
            leaves it not exercised, never refutes it.
        tasks: the registered tasks it concerns (empty when the tasks were not read: app-wide).
        min_fault_s: how long an ``exercised_by`` fault must last to be able to bite (a backend
            outage shorter than the retry budget cannot show mode 17): shorter ones neither
            confirm nor refute it.

    Example:
        >>> r = Risk("early_acks", 3, "t", "task_acks_late=False", ("lost",), "f", "loss")
        >>> Risk.from_dict(json.loads(json.dumps(r.to_dict()))) == r
        True
    """

    id: str
    mode: int
    title: str
    setting: str
    predicts: tuple[str, ...]
    fix: str
    severity: Severity
    exercised_by: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    min_fault_s: float = 0.0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"a risk's severity is one of {', '.join(SEVERITIES)}, not {self.severity!r}")
        object.__setattr__(self, "predicts", tuple(self.predicts))
        object.__setattr__(self, "exercised_by", tuple(self.exercised_by))
        object.__setattr__(self, "tasks", tuple(self.tasks))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {"id": self.id, "mode": self.mode, "title": self.title, "setting": self.setting,
                "predicts": list(self.predicts), "fix": self.fix, "severity": self.severity,
                "exercised_by": list(self.exercised_by), "tasks": list(self.tasks), "min_fault_s": self.min_fault_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Risk:
        """Read `to_dict`'s output back."""
        try:
            return cls(id=str(d["id"]), mode=int(d["mode"]), title=str(d["title"]), setting=str(d["setting"]),
                       predicts=tuple(d.get("predicts") or ()), fix=str(d["fix"]), severity=d["severity"],
                       exercised_by=tuple(d.get("exercised_by") or ()), tasks=tuple(d.get("tasks") or ()),
                       min_fault_s=float(d.get("min_fault_s") or 0.0))
        except KeyError as exc:
            raise ValueError(f"a risk dict needs the key {exc.args[0]!r}; got keys {sorted(d)}") from None


# ---------------------------------------------------------------------------------- reading


def _get(conf: Mapping[str, Any], key: str) -> Any:
    try:
        return conf[key]
    except KeyError:
        return CELERY_DEFAULTS.get(key)


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _seconds(v: Any) -> float | None:
    """A positive number of seconds, or None (unset, 0 and negative mean "no limit" to Celery)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def _broker_kind(conf: Mapping[str, Any]) -> str:
    url = _get(conf, "broker_url") or _get(conf, "broker_transport") or "amqp"
    first = str(url).split(";")[0].strip()
    scheme = first.split("://", 1)[0].lower() if "://" in first else first.lower()
    return _SCHEMES.get(scheme, scheme or "amqp")


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def _names(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True, slots=True)
class _TaskView:
    """One task's effective reliability options (its own value, else the app's)."""

    name: str
    acks_late: bool
    reject_on_worker_lost: bool
    acks_on_failure: bool
    acks_on_timeout: bool
    time_limit: float | None
    soft_time_limit: float | None
    rate_limit: str | None


def _task_views(conf: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]] | None) -> list[_TaskView]:
    """The tasks' effective options; without `tasks`, one view of the app-wide settings."""

    def pick(opts: Mapping[str, Any], attr: str, setting: str) -> Any:
        v = opts.get(attr)
        return _get(conf, setting) if v is None else v

    def view(name: str, o: Mapping[str, Any]) -> _TaskView:
        both = pick(o, "acks_on_failure_or_timeout", "task_acks_on_failure_or_timeout")
        on_failure = pick(o, "acks_on_failure", "task_acks_on_failure")
        on_timeout = pick(o, "acks_on_timeout", "task_acks_on_timeout")
        # Celery's Task.bind: the split settings fall back to the combined one, then to True.
        return _TaskView(
            name=name, acks_late=_truthy(pick(o, "acks_late", "task_acks_late")),
            reject_on_worker_lost=_truthy(pick(o, "reject_on_worker_lost", "task_reject_on_worker_lost")),
            acks_on_failure=_truthy(on_failure if on_failure is not None else (True if both is None else both)),
            acks_on_timeout=_truthy(on_timeout if on_timeout is not None else (True if both is None else both)),
            time_limit=_seconds(pick(o, "time_limit", "task_time_limit")),
            soft_time_limit=_seconds(pick(o, "soft_time_limit", "task_soft_time_limit")),
            rate_limit=o.get("rate_limit") or None)

    if tasks:
        return [view(n, tasks[n]) for n in sorted(tasks)]
    return [view("", {})]


def _scope(views: Sequence[_TaskView], chosen: Sequence[_TaskView]) -> tuple[tuple[str, ...], str]:
    """The task names a risk concerns and how to say so ("" when it is every task, or app-wide)."""
    names = tuple(v.name for v in chosen if v.name)
    if not names or len(chosen) == len(views):
        return names, ""
    return names, f" (tasks: {_names(list(names))})"


def _queues_quorum(conf: Mapping[str, Any]) -> list[str]:
    """Names of the configured queues declared as quorum queues (or "default" for the default type)."""
    out = []
    if str(_get(conf, "task_default_queue_type")).lower() == "quorum":
        out.append("task_default_queue_type='quorum'")
    if str(_get(conf, "task_create_missing_queue_type")).lower() == "quorum":
        out.append("task_create_missing_queue_type='quorum'")
    queues = _get(conf, "task_queues") or ()
    items = queues.values() if isinstance(queues, Mapping) else queues
    for q in items:
        args = getattr(q, "queue_arguments", None)
        if args is None and isinstance(q, Mapping):
            args = q.get("queue_arguments")
        if isinstance(args, Mapping) and args.get("x-queue-type") == "quorum":
            out.append(str(getattr(q, "name", None) or (q.get("name") if isinstance(q, Mapping) else q)))
    return out


def _dead_lettered_at_most_once(conf: Mapping[str, Any]) -> list[str]:
    """Configured queues that dead-letter without RabbitMQ's at-least-once strategy.

    >>> from kombu import Queue
    >>> _dead_lettered_at_most_once({"task_queues": [Queue("a", queue_arguments={"x-dead-letter-exchange": "d"})]})
    ['a']
    """
    queues = _get(conf, "task_queues") or ()
    items = queues.values() if isinstance(queues, Mapping) else queues
    out = []
    for q in items:
        args = getattr(q, "queue_arguments", None)
        if args is None and isinstance(q, Mapping):
            args = q.get("queue_arguments")
        if not isinstance(args, Mapping) or not args.get("x-dead-letter-exchange"):
            continue
        safe = args.get("x-queue-type") == "quorum" and args.get("x-dead-letter-strategy") == "at-least-once"
        if not safe:
            out.append(str(getattr(q, "name", None) or (q.get("name") if isinstance(q, Mapping) else q)))
    return out


# ---------------------------------------------------------------------------------- the audit


def audit_conf(conf: Mapping[str, Any], *, tasks: Mapping[str, Mapping[str, Any]] | None = None) -> list[Risk]:
    """The risks of a Celery configuration, worst severity first, then by failure mode.

    `conf` is ``app.conf`` or a plain dict of settings (missing ones take Celery 5.7's defaults).
    `tasks` maps task names to their own options (``acks_late``, ``reject_on_worker_lost``,
    ``acks_on_failure``, ``acks_on_timeout``, ``time_limit``, ``soft_time_limit``,
    ``rate_limit``; None means "the app's setting"): a task's option refines the app's.

    Example:
        >>> hardened = {"broker_url": "amqp://h//", "task_acks_late": True, "task_reject_on_worker_lost": True,
        ...             "task_acks_on_failure_or_timeout": False, "worker_prefetch_multiplier": 1,
        ...             "broker_transport_options": {"confirm_publish": True, "read_timeout": 45}, "task_time_limit": 300,
        ...             "worker_cancel_long_running_tasks_on_connection_loss": True}
        >>> [r.id for r in audit_conf(hardened)]
        ['poison_redelivery']
        >>> [r.id for r in audit_conf(hardened, tasks={"a": {"acks_late": False}, "b": {}})][:1]
        ['early_acks']
    """
    broker = _broker_kind(conf)
    views = _task_views(conf, tasks)
    topts = _get(conf, "broker_transport_options") or {}
    if not isinstance(topts, Mapping):
        topts = {}
    late = [v for v in views if v.acks_late]
    early = [v for v in views if not v.acks_late]
    risks: list[Risk] = []
    kills = ("kill_worker_child", "kill_worker", "cold_shutdown")

    if early:
        names, where = _scope(views, early)
        risks.append(Risk(
            "early_acks", 3, "early acks: a task is acknowledged before it runs, so a worker or pool child "
            "killed mid-task (OOM, SIGKILL, deploy) loses it for good",
            f"task_acks_late=False{where}", ("lost",),
            "Set task_acks_late=True with task_reject_on_worker_lost=True, and make the tasks idempotent.",
            "loss", kills, names))

    no_reject = [v for v in late if not v.reject_on_worker_lost]
    if no_reject:
        names, where = _scope(views, no_reject)
        risks.append(Risk(
            "late_acks_without_reject", 3, "late acks without reject-on-worker-lost: Celery acknowledges a task "
            "whose pool child died (WorkerLostError), so it is never run again",
            f"task_acks_late=True, task_reject_on_worker_lost={_fmt(_get(conf, 'task_reject_on_worker_lost'))}"
            f"{where}", ("lost", "wrong_outcome", "not_redelivered"),
            "Set task_reject_on_worker_lost=True (and bound redeliveries with a quorum queue delivery-limit).",
            "loss", ("kill_worker_child",), names))

    acks_fail = [v for v in late if v.acks_on_failure]
    acks_timeout = [v for v in late if v.acks_on_timeout and v.time_limit is not None]
    if acks_fail or acks_timeout:
        chosen = sorted({*acks_fail, *acks_timeout}, key=lambda v: v.name)
        names, where = _scope(views, chosen)
        what = " or ".join(w for w, on in (("fails", acks_fail), ("hits its hard time limit", acks_timeout)) if on)
        read = ", ".join(f"{k}={_fmt(_get(conf, k))}" for k in
                         ("task_acks_on_failure_or_timeout", "task_acks_on_failure", "task_acks_on_timeout")
                         if _get(conf, k) is not None)
        risks.append(Risk(
            "acks_on_failure_or_timeout", 4, f"acks on failure or timeout: a late-acked task that {what} is "
            "acknowledged, so its message is gone: never redelivered, and never dead-lettered unless the task "
            "publishes it somewhere itself",
            f"task_acks_late=True, {read}{where}", ("missing_from_dlq", "wrong_outcome"),
            "Set task_acks_on_failure=False and task_acks_on_timeout=False (task_acks_on_failure_or_timeout=False "
            "before Celery 5.7) and give the queues a dead-letter exchange (x-dead-letter-exchange), so failed "
            "and timed-out messages are dead-lettered instead of dropped.",
            "loss", (), names))

    if broker in ("redis", "sqs"):
        vt_raw = topts.get("visibility_timeout")
        vt = _seconds(vt_raw) or DEFAULT_VISIBILITY_TIMEOUT[broker]
        vt_read = (f"broker_transport_options.visibility_timeout={_fmt(vt_raw)}" if vt_raw is not None
                   else f"broker_transport_options.visibility_timeout unset (kombu default {_fmt(vt)} s)")
        unbounded = [v for v in late if v.time_limit is None]
        too_long = [v for v in late if v.time_limit is not None and v.time_limit > vt]
        if unbounded or too_long:
            longest = max((v.time_limit for v in too_long if v.time_limit is not None), default=None)
            names, where = _scope(views, [*too_long, *unbounded])
            how = (f"a hard time limit of {_fmt(longest)} s" if longest is not None and not unbounded
                   else "no hard time limit")
            risks.append(Risk(
                "visibility_timeout", 6, f"visibility timeout shorter than a task can run: a late-acked task with "
                f"{how} gets a concurrent copy every {_fmt(vt)} s",
                f"{vt_read}, task_acks_late=True, task_time_limit="
                f"{_fmt(longest) if longest is not None else 'None'}{where}",
                ("duplicate_execution/visibility_timeout",),
                f"Set broker_transport_options={{'visibility_timeout': N}} with N above the longest task_time_limit "
                f"(now {_fmt(vt)} s), and give every task a task_time_limit below it.",
                "duplicate", (), names))
        rated = [v for v in views if v.rate_limit]
        risks.append(Risk(
            "visibility_timeout_eta", 5, f"an ETA or countdown longer than the visibility timeout ({_fmt(vt)} s) "
            "runs the task more than once; so does a message held that long in the worker "
            "(prefetched behind long tasks" + (", or waiting for its rate limit)" if rated else ")"),
            vt_read, ("duplicate_execution/visibility_timeout",),
            "Keep every countdown/ETA well below broker_transport_options['visibility_timeout'], or raise it "
            "above the longest ETA you schedule.", "info", (), tuple(v.name for v in rated if v.name)))
        if late:
            names, where = _scope(views, late)
            risks.append(Risk(
                "redis_unacked_restore", 10, f"a whole worker killed mid-task: its unacked messages come back only "
                f"after the visibility timeout ({_fmt(vt)} s)",
                f"{vt_read}, task_acks_late=True{where}", ("not_redelivered", "lost", "stuck"),
                "Lower broker_transport_options['visibility_timeout'] only if every task ends well within it "
                "(mode 6), or use RabbitMQ, which requeues as soon as the connection drops.",
                "stall", ("kill_worker", "cold_shutdown"), names))

    prefetch = _get(conf, "worker_prefetch_multiplier")
    try:
        prefetch_n = int(prefetch)
    except (TypeError, ValueError):
        prefetch_n = 1
    if prefetch_n != 1 and not _truthy(_get(conf, "worker_disable_prefetch")):
        sev: Severity = "loss" if early else "stall"
        risks.append(Risk(
            "prefetch_multiplier", 9, f"prefetch {prefetch_n} per process: the worker reserves messages beyond the "
            "ones it runs; a shutdown can drop those still in its buffers, and they wait behind long tasks",
            f"worker_prefetch_multiplier={_fmt(prefetch)}" + (", task_acks_late=False" if early else ""),
            ("lost", "stuck"), "Set worker_prefetch_multiplier=1 (with task_acks_late=True).", sev,
            ("warm_shutdown",)))

    if broker == "amqp" and not _truthy(topts.get("confirm_publish")):
        risks.append(Risk(
            "no_publisher_confirms", 11, "no publisher confirms: apply_async() returns before RabbitMQ has the "
            "message, so a publish into a dropped connection or a memory alarm is lost silently",
            f"broker_transport_options.confirm_publish={_fmt(topts.get('confirm_publish'))}", ("lost", "stuck"),
            "Set broker_transport_options={'confirm_publish': True} (with task_publish_retry for the retries).",
            "loss", ("broker_outage:blackhole", "role_partition:producer_broker", "role_partition:producers",
                     "memory_alarm")))

    if _get(conf, "result_backend"):
        base = _get(conf, "result_backend_base_sleep_between_retries_ms") or 10
        cap = _get(conf, "result_backend_max_sleep_between_retries_ms") or 10000
        retries = _get(conf, "result_backend_max_retries")
        backend_predicts = ("completed_and_dlq", "wrong_outcome")
        if not _truthy(_get(conf, "result_backend_always_retry")):
            risks.append(Risk(
                "backend_writes_not_retried", 17, "result backend writes are not retried: a task that ran during a "
                "backend blip is stored as failed (or not at all) after its effects were applied",
                "result_backend_always_retry=False", backend_predicts,
                "Set result_backend_always_retry=True and leave result_backend_max_retries unbounded "
                "(or above your longest backend outage).", "loss", ("backend_outage",)))
        elif retries is not None and math.isfinite(float(retries)):
            # Celery sleeps a full-jitter draw of min(cap, base * 2**n) before retry n = 1..max_retries.
            budget = sum(min(float(cap), float(base) * 2 ** n) for n in range(1, int(retries) + 1)) / 1000.0
            if budget < BACKEND_BUDGET_FLOOR_S:
                risks.append(Risk(
                    "backend_retry_budget", 17, f"result backend writes give up after at most {budget:.1f} s of "
                    "retries (half that on average): a longer backend outage turns a task that ran into a "
                    "failure after its effects were applied",
                    f"result_backend_always_retry=True, result_backend_max_retries={_fmt(retries)}, "
                    f"result_backend_max_sleep_between_retries_ms={_fmt(cap)}", backend_predicts,
                    "Set result_backend_max_retries=float('inf') (Celery's default) or high enough to outlast "
                    "your longest backend outage.", "loss", ("backend_outage",), min_fault_s=budget))

    heartbeat = _seconds(_get(conf, "broker_heartbeat"))
    pool = str(_get(conf, "worker_pool") or "prefork").rsplit(":", 1)[-1].lower()
    longest_any = max((v.time_limit for v in views if v.time_limit is not None), default=None)
    if broker == "amqp" and heartbeat and pool == "solo" and (longest_any is None or longest_any > 2 * heartbeat):
        risks.append(Risk(
            "solo_pool_heartbeats", 20, f"solo pool with {_fmt(heartbeat)} s heartbeats: a task longer than two "
            "heartbeats blocks them, RabbitMQ drops the connection and the worker stops consuming",
            f"worker_pool='solo', broker_heartbeat={_fmt(heartbeat)}", ("lost", "stuck"),
            "Run the worker with -P prefork (or threads) instead of solo, or set broker_heartbeat=0 for solo "
            "workers.", "loss"))
    if broker == "amqp" and not heartbeat:
        risks.append(Risk(
            "no_heartbeat", 1, "no AMQP heartbeat: a half-open broker connection (a broker host that vanished "
            "silently, behind a proxy or load balancer) is never noticed and the worker waits forever",
            f"broker_heartbeat={_fmt(_get(conf, 'broker_heartbeat'))}", ("stuck", "not_recovered"),
            "Set broker_heartbeat=30 (or Celery's default 120).", "stall",
            ("broker_vanish:worker_broker", "broker_vanish:broker")))
    transport = _get(conf, "broker_transport_options") or {}
    read_timeout = transport.get("read_timeout") if isinstance(transport, Mapping) else None
    if broker == "amqp" and heartbeat and not read_timeout:
        risks.append(Risk(
            "no_read_timeout", 1, "AMQP heartbeats without a socket read timeout: after a broker host vanished "
            "silently, the worker notices the dead connection but blocks for good on another one (Celery 5.7 "
            "closes the event dispatcher's old connection on reconnect and waits for the broker's reply; a "
            "confirmed event publish waits the same way)",
            f"broker_heartbeat={_fmt(heartbeat)}, no broker_transport_options['read_timeout']",
            ("stuck", "not_recovered"),
            "Set broker_transport_options['read_timeout'] to a few heartbeats (e.g. 1.5 x broker_heartbeat): "
            "every blocking read on a broker socket then gives up.", "stall",
            ("broker_vanish:worker_broker", "broker_vanish:broker")))

    unlimited = [v for v in views if v.time_limit is None]
    if unlimited:
        names, where = _scope(views, unlimited)
        risks.append(Risk(
            "no_time_limit", 7, "no hard time limit: a hung task holds its worker slot (and, acked late, its "
            "message) forever; RabbitMQ's consumer_timeout (30 min) then closes the channel",
            f"task_time_limit={_fmt(_get(conf, 'task_time_limit'))}, "
            f"task_soft_time_limit={_fmt(_get(conf, 'task_soft_time_limit'))}{where}", ("stuck", "late"),
            "Set task_time_limit (e.g. 300) and task_soft_time_limit a little lower (e.g. 240).", "stall",
            (), names))

    if late and not _truthy(_get(conf, "worker_cancel_long_running_tasks_on_connection_loss")):
        names, where = _scope(views, late)
        risks.append(Risk(
            "long_tasks_not_cancelled", 8, "long tasks are not cancelled on connection loss: after a broker blip "
            "the message is redelivered while the original still runs, so the task runs twice at once",
            f"worker_cancel_long_running_tasks_on_connection_loss=False, task_acks_late=True{where}",
            ("duplicate_effect", "duplicate_execution/concurrent"),
            "Set worker_cancel_long_running_tasks_on_connection_loss=True (the default from Celery 6.0).",
            "duplicate", ("reset_peer", "broker_outage", "role_partition:worker_broker", "role_partition:workers"),
            names))

    quorum = _queues_quorum(conf) if broker == "amqp" else []
    if quorum and not _truthy(_get(conf, "worker_detect_quorum_queues")):
        risks.append(Risk(
            "quorum_global_qos", 12, "quorum queues with global QoS: RabbitMQ refuses to consume from a quorum "
            "queue on a channel with global prefetch (NOT_IMPLEMENTED ... does not support global qos): the "
            "worker reconnects in a loop and never consumes (Celery < 5.7 with per-consumer QoS: the prefetch "
            "reduced after a reconnect never came back)",
            f"worker_detect_quorum_queues=False with quorum queues ({_names(quorum)})",
            ("stuck", "not_recovered", "slow_throughput_recovery"),
            "Set worker_detect_quorum_queues=True so the worker uses per-consumer QoS with quorum queues.",
            "stall", ()))

    at_most_once = _dead_lettered_at_most_once(conf) if broker == "amqp" else []
    if at_most_once:
        risks.append(Risk(
            "dead_letters_at_most_once", 21, "dead-lettering is at most once: a message rejected into the "
            "dead-letter exchange just before the broker crashes is gone (the reject is applied, the dead "
            "letter was never stored)",
            f"x-dead-letter-exchange on {_names(at_most_once)} without quorum queues and "
            "x-dead-letter-strategy=at-least-once",
            ("dlq_claimed_not_held", "unit_not_in_dlq", "missing_from_dlq"),
            "Declare the queues as quorum queues with x-dead-letter-strategy=at-least-once and "
            "x-overflow=reject-publish (RabbitMQ >= 3.10).",
            "loss", ("broker_outage:kill_restart",)))

    if late and any(v.reject_on_worker_lost for v in late):
        risks.append(Risk(
            "poison_redelivery", 3, "reject-on-worker-lost requeues a task whose child died: a task that always "
            "kills its child (OOM on one input) is redelivered forever unless the queue bounds deliveries",
            "task_reject_on_worker_lost=True", ("redelivery_loop",),
            "Bound redeliveries: quorum queues with x-delivery-limit (RabbitMQ), or a delivery counter in the "
            "task that dead-letters after N.", "info"))

    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(risks, key=lambda r: (order[r.severity], r.mode, r.id))


_TASK_OPTIONS = ("acks_late", "reject_on_worker_lost", "acks_on_failure_or_timeout", "acks_on_failure",
                 "acks_on_timeout", "time_limit", "soft_time_limit", "rate_limit")


def audit_app(app: Any) -> list[Risk]:
    """`audit_conf` of a Celery app: its ``conf`` and its registered tasks (``celery.*`` skipped).

    Example:
        >>> from celery import Celery
        >>> app = Celery("demo", broker="amqp://127.0.0.1//", set_as_current=False)
        >>> app.conf.task_acks_late = True
        >>> def quick() -> None: ...
        >>> _ = app.task(name="demo.quick", acks_late=False, time_limit=10, shared=False)(quick)
        >>> [(r.id, r.tasks) for r in audit_app(app) if r.id == "early_acks"]
        [('early_acks', ('demo.quick',))]
    """
    tasks: dict[str, dict[str, Any]] = {}
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        tasks[name] = {opt: getattr(task, opt, None) for opt in _TASK_OPTIONS}
    return audit_conf(app.conf, tasks=tasks or None)


# ---------------------------------------------------------------------------------- confirmation


def confirm(risks: Sequence[Risk], observed: Mapping[str, int],
            exercised: Collection[str] | Mapping[str, float] = ()) -> list[tuple[Risk, str]]:
    """Each risk with its status against one run (or a whole certification).

    `observed`: anomaly kind -> count seen, allowed or not (``"duplicate_execution/<cause>"`` and
    ``"duplicate_execution/concurrent"`` narrow duplicate executions). `exercised`: the faults
    that ran and bit, as tokens ``kind``, ``kind:mode``, ``kind:role``; a mapping gives each
    token the longest time (seconds) such a fault was in force, checked against the risk's
    ``min_fault_s`` (a plain collection counts as long enough).

    - ``confirmed``: a predicted kind was observed, and the risk could bite there (one of its
      ``exercised_by`` faults ran, or it needs no fault);
    - ``refuted``: one of its ``exercised_by`` faults ran and no predicted kind was observed;
    - ``not exercised``: otherwise (including a predicted anomaly seen where only another
      cause could have produced it).

    Example:
        >>> r = Risk("early_acks", 3, "t", "s", ("lost",), "f", "loss", exercised_by=("kill_worker_child",))
        >>> [s for _, s in confirm([r], {"lost": 1}, {"kill_worker_child"})]
        ['confirmed']
        >>> [s for _, s in confirm([r], {}, {"kill_worker_child"})], [s for _, s in confirm([r], {"lost": 1})]
        (['refuted'], ['not exercised'])
        >>> slow = Risk("backend_retry_budget", 17, "t", "s", ("completed_and_dlq",), "f", "loss",
        ...             exercised_by=("backend_outage",), min_fault_s=8.5)
        >>> [s for _, s in confirm([slow], {}, {"backend_outage": 2.0})]   # too short to bite
        ['not exercised']
    """
    lasted: dict[str, float] = (dict(exercised) if isinstance(exercised, Mapping)
                                else dict.fromkeys(exercised, math.inf))
    out: list[tuple[Risk, str]] = []
    for r in risks:
        bit = any(lasted.get(token, -1.0) >= r.min_fault_s for token in r.exercised_by)
        seen = any(observed.get(k, 0) > 0 for k in r.predicts)
        if seen and (bit or not r.exercised_by):
            out.append((r, CONFIRMED))
        elif bit:
            out.append((r, REFUTED))
        else:
            out.append((r, NOT_EXERCISED))
    return out


# ---------------------------------------------------------------------------------- the command


def audit_exit_code(risks: Sequence[Risk]) -> int:
    """1 when a risk may lose or duplicate work, else 0 (stall and info risks are reported only).

    >>> audit_exit_code([]), audit_exit_code(audit_conf({}))
    (0, 1)
    """
    return 1 if any(r.severity in ("loss", "duplicate") for r in risks) else 0


def format_risks(risks: Sequence[Risk], app_name: str = "") -> str:
    """The audit in plain words: one block per risk, then a one-line summary.

    >>> print(format_risks([]).splitlines()[-1])
    no risk found: nothing predicts a lost or duplicated task
    """
    lines = [f"celery-chaos audit of {app_name}" if app_name else "celery-chaos audit"]
    for r in risks:
        lines.append(f"[{r.severity}] mode {r.mode} ({r.id}): {r.title}")
        lines.append(f"    setting:  {r.setting}")
        lines.append(f"    fix:      {r.fix}")
        if r.predicts:
            lines.append(f"    predicts: {', '.join(r.predicts)}")
    if not risks:
        lines.append("no risk found: nothing predicts a lost or duplicated task")
    else:
        counts = ", ".join(f"{n} {s}" for s in SEVERITIES if (n := sum(r.severity == s for r in risks)))
        lines.append(f"{len(risks)} risk(s): {counts}")
    return "\n".join(lines)


def _load_app(spec: str) -> Any:
    """The Celery app at ``MODULE:ATTR`` (or a module holding ``app``/``celery``); ValueError with the fix."""
    from celery import Celery

    module, sep, attr = spec.partition(":")
    if not module:
        raise ValueError(f"--app must be MODULE:ATTR (e.g. sample_system:app), not {spec!r}")
    # `celery -A` finds apps in the current directory; a console script does not have it on sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of user code is bad input
        raise ValueError(f"--app {spec!r}: cannot import {module!r} ({type(exc).__name__}: {exc}); "
                         "check the module path and PYTHONPATH") from None
    names = attr.split(".") if sep and attr else ["app", "celery"]
    try:
        if sep and attr:
            for part in names:
                obj = getattr(obj, part)
        else:
            obj = next(getattr(obj, n) for n in names if isinstance(getattr(obj, n, None), Celery))
    except StopIteration:
        raise ValueError(f"--app {spec!r}: module {module!r} has no Celery app named app or celery; "
                         "name it: --app MODULE:ATTR") from None
    except Exception as exc:  # noqa: BLE001 - a lazy attribute may fail while building the app
        raise ValueError(f"--app {spec!r}: cannot get {attr!r} from {module!r} ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(obj, Celery):
        raise ValueError(f"--app {spec!r} is a {type(obj).__name__}, not a Celery app: point it at the "
                         "celery.Celery instance (e.g. proj.celery:app)")
    return obj


def audit_main(argv: Sequence[str] | None = None) -> int:
    """``celery-chaos audit --app MOD:ATTR [--json]``: print the risks; exit 0, 1 (loss or duplicate) or 2."""
    p = argparse.ArgumentParser(
        prog="celery-chaos audit",
        description="List the failure modes a Celery app's configuration is open to, with the fix for each. "
                    "Exit 0: no risk of lost or duplicated tasks; 1: some; 2: bad input.")
    p.add_argument("--app", required=True, help="MODULE:ATTR of the Celery app (e.g. sample_system:app)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        app = _load_app(args.app)
    except ValueError as exc:
        print(f"celery-chaos audit: {exc}", file=sys.stderr)
        return 2
    try:
        risks = audit_app(app)
    except Exception as exc:  # noqa: BLE001 - finalizing the app imports user task modules
        print(f"celery-chaos audit: --app {args.app!r}: cannot read its configuration and tasks "
              f"({type(exc).__name__}: {exc}); fix the app so `celery -A` can load it", file=sys.stderr)
        return 2
    code = audit_exit_code(risks)
    if args.json:
        print(json.dumps({"app": args.app, "broker": _broker_kind(app.conf), "exit_code": code,
                          "risks": [r.to_dict() for r in risks]}))
    else:
        print(format_risks(risks, args.app))
    return code
