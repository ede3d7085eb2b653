"""The nemesis: fault kinds as data, schedules (time offsets or history events), heal-always application.

Public API:

- fault kinds (`harness.faults.kinds`, every one re-exported): `BrokerOutage`, `Latency`,
  `KillWorkerChild`, ... and `fault_from_dict`; what each does is its driver's
  (`harness.faults.drivers`);
- schedules (`harness.faults.schedule`): `Schedule`, `ScheduledFault`, `Trigger`, `at`, `when`,
  `on_execute`, `on_success`, `on_effect`, `on_receive`, `on_worker_lost`, `after_publishes`;
- `Nemesis` and `AppliedFault` (imported lazily: kinds and schedules stay free of I/O imports).

Example:
    >>> s = Schedule.of(at(2.0, BrokerOutage("blackhole"), duration_s=5.0),
    ...                 when(on_execute("orders.charge"), KillWorkerChild()))
    >>> print(s.describe())
    f1: broker_outage(mode='blackhole') at 2 s for 5 s
    f2: kill_worker_child(task_name=None, worker=None, wait_s=10.0, count=1) on execute of orders.charge
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults import kinds as _kinds
from harness.faults.kinds import *  # noqa: F403 - every kind, so a new one needs no line here
from harness.faults.schedule import (
    Schedule,
    ScheduledFault,
    Trigger,
    after_publishes,
    at,
    on_effect,
    on_execute,
    on_receive,
    on_success,
    on_worker_lost,
    when,
)

if TYPE_CHECKING:
    from harness.faults.nemesis import AppliedFault, Nemesis

__all__ = [
    *_kinds.__all__,
    "AppliedFault",
    "Nemesis",
    "Schedule",
    "ScheduledFault",
    "Trigger",
    "after_publishes",
    "at",
    "on_effect",
    "on_execute",
    "on_receive",
    "on_success",
    "on_worker_lost",
    "when",
]


def __getattr__(name: str) -> Any:
    if name in ("Nemesis", "AppliedFault"):
        from harness.faults import nemesis

        return getattr(nemesis, name)
    raise AttributeError(f"module 'harness.faults' has no attribute {name!r}")
