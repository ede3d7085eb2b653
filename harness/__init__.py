"""celery-chaos-harness: chaos tests for a Celery system, Jepsen-style.

The names a user needs, importable from ``harness``: a stack (`open_stack`, `Stack`), a run
(`Run`) of a `Workload` whose `Unit` values declare their effects (`EffectRecord`), a
`Deployment`; faults (every fault kind, e.g. `KillWorkerChild`, `Latency`) in a `Schedule` at
times (`at`) or on history events (`when` with `on_execute`, `on_success`, `on_effect`, `on_receive`,
`on_worker_lost`, `after_publishes`); the guarantee judged (`Claim`, `Expectations`); and the
checkers over a recorded history (`check_all`). docs/architecture.md says where each part lives.

Names load on first use, so ``import harness.workers.launch`` in a worker process does not
import the whole harness, and the built-in Toxiproxy server (``python -S -m harness.toxiproxy``,
the package and that folder alone) needs nothing but the standard library.

Example:
    >>> from harness import Claim, KillWorkerChild, Latency, Schedule, at, check_all, on_effect, when
    >>> schedule = Schedule.of(at(1, Latency("worker_broker", ms=300), duration_s=2),
    ...                        when(on_effect("payment.charged"), KillWorkerChild()))
    >>> print(schedule.describe())
    f1: latency(role='worker_broker', ms=300, jitter_ms=0, direction='both') at 1 s for 2 s
    f2: kill_worker_child(task_name=None, worker=None, wait_s=10.0, count=1) on effect kind payment.charged
    >>> Claim.parse("at-most-once").allows_loss
    True
    >>> check_all([])["lost_tasks"].valid.value        # an empty history proves nothing
    'unknown'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from harness.checkers import Expectations as Expectations
    from harness.checkers import check_all as check_all
    from harness.checkers.claim import Claim as Claim
    from harness.faults.kinds import *  # noqa: F403
    from harness.faults.schedule import Schedule as Schedule
    from harness.faults.schedule import after_publishes as after_publishes
    from harness.faults.schedule import at as at
    from harness.faults.schedule import on_effect as on_effect
    from harness.faults.schedule import on_execute as on_execute
    from harness.faults.schedule import on_receive as on_receive
    from harness.faults.schedule import on_success as on_success
    from harness.faults.schedule import on_worker_lost as on_worker_lost
    from harness.faults.schedule import when as when
    from harness.run import Run as Run
    from harness.stack import open_stack as open_stack
    from harness.stack.base import Stack as Stack
    from harness.workload import Deployment as Deployment
    from harness.workload import EffectRecord as EffectRecord
    from harness.workload import Unit as Unit
    from harness.workload import Workload as Workload

#: public name -> the module that defines it; the fault kinds are added by `_where`.
_CORE: dict[str, str] = {
    "open_stack": "harness.stack",
    "Stack": "harness.stack.base",
    "Run": "harness.run",
    "Workload": "harness.workload",
    "Deployment": "harness.workload",
    "Unit": "harness.workload",
    "EffectRecord": "harness.workload",
    "Schedule": "harness.faults.schedule",
    "at": "harness.faults.schedule",
    "when": "harness.faults.schedule",
    "on_execute": "harness.faults.schedule",
    "on_effect": "harness.faults.schedule",
    "on_receive": "harness.faults.schedule",
    "on_success": "harness.faults.schedule",
    "on_worker_lost": "harness.faults.schedule",
    "after_publishes": "harness.faults.schedule",
    "Claim": "harness.checkers.claim",
    "Expectations": "harness.checkers",
    "check_all": "harness.checkers",
}


def _where() -> dict[str, str]:
    # The fault classes of harness.faults.kinds (not its constants and helpers): a new kind is
    # exported with no change here. Read on first use, not at import (see the module docstring).
    from harness.faults import kinds

    return {**_CORE, **{n: "harness.faults.kinds" for n in kinds.__all__ if n[0].isupper() and not n.isupper()}}


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = sorted(_where())
    else:
        module = _where().get(name)
        if module is None:
            raise AttributeError(f"module 'harness' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_where()))
