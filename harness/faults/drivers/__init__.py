"""The fault drivers: one per fault kind, grouped by family, in one registry keyed by fault class.

A fault kind is data (`harness.faults.kinds`); its driver is everything the harness does with
it: check it can run here, apply it (registering its undo), draw it for exploration, and declare
what it can do to tasks. The nemesis, the explorer and the run read only this registry.

Families: `network` (a role's proxies), `servers` (broker, result backend), `cluster` (one node
of a RabbitMQ cluster), `dependencies`
(extra proxies in front of external services), `workers` (celery worker processes).

Adding a fault kind: its frozen dataclass in `harness/faults/kinds.py` (and in `FAULT_KINDS`),
its driver class in the family module (and in that module's ``DRIVERS``), its tests.

Example:
    >>> from harness.faults.kinds import KillWorker, Latency
    >>> driver_for(KillWorker()).cuts_running_tasks, driver_for(Latency()).cuts_running_tasks
    (True, False)
    >>> sorted(kinds_cutting_running_tasks(["latency", "cold_shutdown", "kill_worker"]))
    ['cold_shutdown', 'kill_worker']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.errors import UnsupportedFault
from harness.faults.drivers import cluster, dependencies, network, servers, workers
from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver, NeverBit
from harness.faults.kinds import FAULT_KINDS, Fault

__all__ = ["DRIVERS", "Application", "Draws", "FaultContext", "FaultDriver", "NeverBit", "driver_for",
           "kinds_cutting_running_tasks"]

#: fault class -> its driver; built from the family modules, nothing registers itself.
DRIVERS: Mapping[type[Fault], FaultDriver[Any]] = {
    d.fault_type: d for d in (*network.DRIVERS, *servers.DRIVERS, *cluster.DRIVERS, *dependencies.DRIVERS,
                               *workers.DRIVERS)
}


def driver_for(fault: Fault | type[Fault] | str) -> FaultDriver[Any]:
    """The driver of a fault, a fault class or a kind name (UnsupportedFault when none).

    >>> driver_for("pause_worker").space_fields
    ('workers',)
    """
    if isinstance(fault, str):
        cls: type[Fault] | None = FAULT_KINDS.get(fault)
    else:
        cls = fault if isinstance(fault, type) else type(fault)
    driver = DRIVERS.get(cls) if cls is not None else None
    if driver is None:
        raise UnsupportedFault(f"no fault driver for {fault!r}: add one to harness/faults/drivers/")
    return driver


def kinds_cutting_running_tasks(kinds: Iterable[str]) -> frozenset[str]:
    """The kinds among `kinds` whose driver declares ``cuts_running_tasks`` (for
    ``Expectations.kill_fault_kinds``); kinds without a driver are left out."""
    return frozenset(k for k in kinds if k in FAULT_KINDS and FAULT_KINDS[k] in DRIVERS
                     and DRIVERS[FAULT_KINDS[k]].cuts_running_tasks)
