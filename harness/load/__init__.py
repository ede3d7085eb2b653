"""Locust load for chaos runs: a Celery user class, a headless runner in subprocesses, soak sampling.

Public API (imported lazily: this package imports nothing at import time, so the Locust entry
point can import Locust, which monkey-patches the standard library, before anything else):

- where load goes: `LoadTarget` (the ``CHAOS_*`` environment contract of a Locust process)
- what load to run and its outcome: `LoadSpec`, `LoadRun`, `run_load`, `LoadResult`, `LoadError`
- workload units for open-ended load: `UnitSource`, `UnitLedger`, `read_units`
- soak building blocks: ``harness.load.soak``
- the Locust user class: ``harness.load.user.CeleryUser`` (import it only from a locustfile:
  it imports Locust)

Example:
    >>> from harness.load import LoadSpec
    >>> LoadSpec("loadtests/locustfile.py", users=2, run_time_s=5).users   # doctest: +SKIP
    2
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.load.runner import LoadError, LoadRun, LoadSpec, run_load
    from harness.load.stats import LatencySummary, LoadResult, RequestStats
    from harness.load.target import LoadTarget
    from harness.load.units import UnitLedger, UnitSource, read_units

__all__ = [
    "LatencySummary",
    "LoadError",
    "LoadResult",
    "LoadRun",
    "LoadSpec",
    "LoadTarget",
    "RequestStats",
    "UnitLedger",
    "UnitSource",
    "read_units",
    "run_load",
]

_LAZY = {
    "LoadError": "harness.load.runner",
    "LoadRun": "harness.load.runner",
    "LoadSpec": "harness.load.runner",
    "run_load": "harness.load.runner",
    "LatencySummary": "harness.load.stats",
    "LoadResult": "harness.load.stats",
    "RequestStats": "harness.load.stats",
    "LoadTarget": "harness.load.target",
    "UnitLedger": "harness.load.units",
    "UnitSource": "harness.load.units",
    "read_units": "harness.load.units",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.load' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
