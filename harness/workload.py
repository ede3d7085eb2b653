"""The workload contract: what a system under test offers the harness to drive and to read back.

Responsibility: the small protocol a user implements for their own Celery app (the sample
system's ``sample_system.workload.SampleWorkload`` is the reference implementation) and the
values that cross it. The harness calls, in order::

    workload.setup(app)                          # declare queues, reset the effect store
    units = workload.units(n_per_kind, run_id)   # unique keys with expected outcomes
    for u in units: workload.submit(app, u)      # publish (through the producer's proxy)
    ... faults, heal, drain ...
    workload.effects()                           # what the effect store holds, per key
    workload.dlq_entries(app)                    # what the dead-letter queue holds

and judges: every ``complete`` unit has each of its ``effects`` exactly once; every ``dlq``
unit is in the DLQ exactly once (``copies == 1``) and nothing else is.

Example (a one-kind workload for an app with an idempotent ``send_invoice`` task)::

    class InvoiceWorkload:
        kinds = ("invoice",)

        def setup(self, app):
            db.reset()

        def units(self, n_per_kind, run_id):
            return [Unit(key=f"{run_id}:invoice:{i}", kind="invoice", expected="complete",
                         effects=(f"invoice.sent:{run_id}:invoice:{i}",), run_id=run_id)
                    for i in range(n_per_kind)]

        def submit(self, app, unit):
            r = app.send_task("billing.send_invoice", kwargs={"key": unit.key},
                              headers={"chaos_key": unit.key, "chaos_run_id": unit.run_id})
            return r.id

        def effects(self):
            return db.effects_by_key()       # -> dict[str, list[EffectRecord]]

        def dlq_entries(self, app):
            return []                        # this app has no DLQ
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from harness.errors import ConfigError

Expected = Literal["complete", "dlq"]
EXPECTED_OUTCOMES: tuple[str, ...] = ("complete", "dlq")

#: Message headers that carry the unit's identity to the worker (and into the history).
KEY_HEADER = "chaos_key"
RUN_ID_HEADER = "chaos_run_id"


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of work: a unique `key`, its `kind`, and what must happen to it.

    ``expected="complete"``: each idempotency key in `effects` ends up stored exactly once.
    ``expected="dlq"``: the unit's failing task is in the DLQ exactly once, and the `effects`
    listed (those applied before the failure, often none) are stored exactly once.

    >>> Unit(key="r1:order:0", kind="order", expected="complete", effects=("payment.charged:r1:order:0",)).expected
    'complete'
    """

    key: str
    kind: str
    expected: Expected
    effects: tuple[str, ...] = ()
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "expected": self.expected,
                "effects": list(self.effects), "run_id": self.run_id}


@dataclass(frozen=True, slots=True)
class EffectRecord:
    """One stored side effect, read back from the system's effect store.

    `duplicate_writes` counts later attempts the idempotent store absorbed; two records with
    the same `idempotency_key` are a duplicated effect.

    >>> EffectRecord(key="r1:order:0", kind="payment.charged", idempotency_key="charge:r1:order:0").to_dict()["kind"]
    'payment.charged'
    """

    key: str
    kind: str
    idempotency_key: str
    task_id: str | None = None
    value: Mapping[str, Any] = field(default_factory=dict)
    written_at: float = 0.0
    duplicate_writes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "idempotency_key": self.idempotency_key,
                "task_id": self.task_id, "value": dict(self.value), "written_at": self.written_at,
                "duplicate_writes": self.duplicate_writes}


@dataclass(frozen=True, slots=True)
class DLQEntry:
    """One dead-lettered task with its full envelope.

    `attempts` is how many times the task ran (retries + 1); `copies` how many messages for
    this task id the DLQ holds (exactly-once means 1); `reason` is the broker's or the
    system's reason (``rejected``, ``time_limit``, ...).
    """

    task_id: str
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    exception: str = ""
    traceback: str = ""
    attempts: int = 1
    key: str | None = None
    run_id: str | None = None
    queue: str | None = None
    reason: str | None = None
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "name": self.name, "args": list(self.args),
                "kwargs": dict(self.kwargs), "exception": self.exception, "traceback": self.traceback,
                "attempts": self.attempts, "key": self.key, "run_id": self.run_id, "queue": self.queue,
                "reason": self.reason, "copies": self.copies}


@runtime_checkable
class Workload(Protocol):
    """What the harness needs from a system under test (see the module docstring for a full one).

    A structural protocol: any object with these members is a workload.

    >>> class Nothing:
    ...     kinds = ("order",)
    ...     def setup(self, app): pass
    ...     def units(self, n_per_kind, run_id): return []
    ...     def submit(self, app, unit): return ""
    ...     def effects(self): return {}
    ...     def dlq_entries(self, app): return []
    >>> isinstance(Nothing(), Workload)
    True
    """

    kinds: tuple[str, ...]

    def setup(self, app: Any) -> None:
        """Declare queues and reset the effect store for a new run."""

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        """`n_per_kind` units of each kind, keys unique and namespaced by `run_id`."""

    def submit(self, app: Any, unit: Unit) -> str:
        """Publish `unit`'s work; return the id of its root task."""

    def effects(self) -> dict[str, list[EffectRecord]]:
        """Every stored effect, grouped by unit key."""

    def dlq_entries(self, app: Any) -> list[DLQEntry]:
        """Every entry of the dead-letter queue (one per task id, `copies` counting messages)."""


def validate_units(workload: Workload, units: Sequence[Unit] | Iterable[Unit], run_id: str) -> list[Unit]:
    """Check the promises of `Workload.units`; return the units as a list or raise ConfigError naming each broken one.

    >>> class W:
    ...     kinds = ("a",)
    >>> validate_units(W(), [Unit("r:a:0", "a", "complete", run_id="r")], "r")[0].key
    'r:a:0'
    """
    out = list(units)
    problems: list[str] = []
    seen: set[str] = set()
    kinds = set(getattr(workload, "kinds", ()))
    for u in out:
        if not isinstance(u, Unit):
            problems.append(f"units() returned {u!r}, expected harness.workload.Unit values")
            continue
        if u.key in seen:
            problems.append(f"key {u.key!r} is used twice: every unit needs a unique key")
        seen.add(u.key)
        if u.kind not in kinds:
            problems.append(f"unit {u.key!r} has kind {u.kind!r}, not one of the workload's kinds {sorted(kinds)}")
        if u.expected not in EXPECTED_OUTCOMES:
            problems.append(f"unit {u.key!r} expects {u.expected!r}: use 'complete' or 'dlq'")
        if run_id and run_id not in u.key:
            problems.append(
                f"unit key {u.key!r} does not contain the run id {run_id!r}: namespace keys by run "
                "so leftovers of an earlier run are told apart"
            )
    if problems:
        raise ConfigError(f"{type(workload).__name__}.units() broke the workload contract: " + "; ".join(problems))
    return out


@dataclass(frozen=True, slots=True)
class Deployment:
    """How to run a system under test on one stack: the app's import path, the workers' environment
    and queues, and the workload configured for that stack (URLs, a fresh effect store).

    A workload that needs more than URLs to run (a partner service, a database, settings in
    environment variables) offers ``prepare(stack, **variant)``, a context manager yielding a
    Deployment; the certification and the scenario suite use it. ``variant`` names configuration
    overrides the system understands (e.g. ``acks_late=False``); unknown names are a ConfigError.

    >>> d = Deployment(app="billing.tasks:app", workload=None, queues=("billing",))
    >>> d.queues
    ('billing',)
    """

    app: str
    workload: Any
    env: Mapping[str, str] = field(default_factory=dict)
    queues: tuple[str, ...] = ()
    concurrency: int = 2
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: A Celery app configured exactly like the workers', for the producer side. Give one when
    #: the app at `app` is built once per process from the environment (then it would keep the
    #: first deployment's configuration across deployments in one process).
    producer_app: Any = None

    @property
    def producer(self) -> Any:
        """What the producer should use: `producer_app`, else the import path `app`."""
        return self.producer_app if self.producer_app is not None else self.app


def load_object(path: str, what: str) -> Any:
    """Import ``module:attr`` (or ``module.attr``); a clear ConfigError when it is not there.

    >>> load_object("harness.workload:Unit", "--workload") is Unit
    True
    """
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ConfigError(f"{what} must be MODULE:ATTR (e.g. sample_system.workload:SampleWorkload), not {path!r}")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import {what} module {module!r}: {exc}. Is it on PYTHONPATH?") from exc
    try:
        obj = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"{what} {path!r}: module {module!r} has no attribute {attr!r}") from None
    return obj


def load_workload(path: str) -> Any:
    """The workload object at `path`; a class or zero-argument factory is called to make one."""
    obj = load_object(path, "--workload")
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "units")):
        obj = obj()
    missing = [m for m in ("units", "submit", "effects") if not hasattr(obj, m)]
    if missing:
        raise ConfigError(f"--workload {path!r} is not a harness.workload.Workload: it lacks {missing}. "
                          "See harness/workload.py for the contract and an example.")
    return obj
