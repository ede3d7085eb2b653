"""The example apps work on a real stack with no fault: one worker, one unit per kind, every
declared effect read back from the app's own tables exactly once.

Each app's adapter is loaded from its file under a unique module name (both are called
``chaos_workload``, as a user's would be).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.run import Run
from harness.workers import WorkerSpec

pytestmark = pytest.mark.chaos

APPS_DIR = Path(__file__).resolve().parent
#: app directory -> the workload class its chaos_workload.py defines
APPS = {"shop_django": "ShopWorkload", "ledger_sqla": "LedgerWorkload"}


def load_adapter(app_dir: str) -> ModuleType:
    """Import ``<app_dir>/chaos_workload.py`` as ``chaos_workload_<app_dir>`` (once per process)."""
    name = f"chaos_workload_{app_dir}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APPS_DIR / app_dir / "chaos_workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("hardened", [False, True], ids=["defaults", "hardened"])
@pytest.mark.parametrize("app_dir", sorted(APPS))
def test_app_completes_every_unit_without_faults(chaos_stack: Any, app_dir: str, hardened: bool) -> None:
    workload_cls = getattr(load_adapter(app_dir), APPS[app_dir])
    with workload_cls(hardened=hardened).prepare(chaos_stack) as d:
        worker = WorkerSpec(app=d.app, queues=tuple(d.queues), env=dict(d.env), concurrency=2,
                            hostname=f"smoke-{app_dir.replace('_', '-')}@127.0.0.1")
        result = Run(chaos_stack, app=d.producer, workload=d.workload, workers=[worker], n_per_kind=1,
                     quiesce_timeout_s=30).execute()
        effects = d.workload.effects()
        units = d.workload.units(1, result.run_id)
    assert result.quiesced, result.summary()
    assert result.counts.get("submitted") == len(d.workload.kinds), result.summary()
    for unit in units:
        stored = sorted(r.idempotency_key for r in effects.get(unit.key, []))
        assert stored == sorted(unit.effects), f"{unit.key}: stored {stored}, declared {sorted(unit.effects)}"
    assert result.valid.value == "true", result.summary()
