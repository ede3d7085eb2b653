"""The example apps work on a real stack with no fault: one worker, one unit per kind, every
declared effect read back from the app's own tables exactly once, every task's result in the
app's own db+sqlite result backend.

Each app's adapter is loaded from its file under a unique module name (both are called
``chaos_workload``, as a user's would be).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.history import F
from harness.history.ops import OpType
from harness.run import Run
from harness.workers import WorkerSpec

pytestmark = pytest.mark.chaos

APPS_DIR = Path(__file__).resolve().parent
#: app directory -> the workload class its chaos_workload.py defines
APPS = {"shop_django": "ShopWorkload", "ledger_sqla": "LedgerWorkload"}


@pytest.fixture(autouse=True)
def _restore_current_app() -> Iterator[None]:
    """Importing an app module made with ``Celery("shop")`` makes it this thread's current app:
    give later tests of the session the one they had."""
    from celery import _state

    before = getattr(_state._tls, "current_app", None)
    yield
    _state._set_current_app(before)


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


FULL = pytest.mark.full
#: (app directory, hardened); `make test` runs one case per app, the hardened ones carry `full`.
CASES = [
    pytest.param("shop_django", False, id="shop_django-defaults"),
    pytest.param("ledger_sqla", False, id="ledger_sqla-defaults"),
    pytest.param("shop_django", True, id="shop_django-hardened", marks=FULL),
    pytest.param("ledger_sqla", True, id="ledger_sqla-hardened", marks=FULL),
]


def stored_results(backend_url: str) -> dict[str, int]:
    """Task states in a db+sqlite result backend: {state: count}."""
    con = sqlite3.connect(backend_url.removeprefix("db+sqlite:///"))
    try:
        return dict(con.execute("SELECT status, COUNT(*) FROM celery_taskmeta GROUP BY status").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize(("app_dir", "hardened"), CASES)
def test_app_completes_every_unit_without_faults(chaos_stack: Any, app_dir: str, hardened: bool) -> None:
    workload_cls = getattr(load_adapter(app_dir), APPS[app_dir])
    with workload_cls(hardened=hardened).prepare(chaos_stack) as d:
        worker = WorkerSpec(app=d.app, queues=tuple(d.queues), env=dict(d.env), concurrency=2,
                            hostname=f"smoke-{app_dir.replace('_', '-')}@127.0.0.1")
        result = Run(chaos_stack, app=d.producer, workload=d.workload, workers=[worker], n_per_kind=1,
                     settings=dict(d.settings) or None, quiesce_timeout_s=30).execute()
        effects = d.workload.effects()
        units = d.workload.units(1, result.run_id)
        backend = next(v for k, v in d.env.items() if k.endswith("_RESULT_BACKEND"))
        results = stored_results(backend)
    assert result.quiesced, result.summary()
    assert result.counts.get("submitted") == len(d.workload.kinds), result.summary()
    for unit in units:
        stored = sorted(r.idempotency_key for r in effects.get(unit.key, []))
        assert stored == sorted(unit.effects), f"{unit.key}: stored {stored}, declared {sorted(unit.effects)}"
    assert result.valid.value == "true", result.summary()
    # The harness keeps the app's own db+sqlite result backend: every task of the app stored its
    # result there (the chord's celery.chord_unlock polling task, which runs only on such a
    # backend, stores none).
    app_tasks = sum(1 for op in result.history or () if op.f == F.EXECUTE and op.type == OpType.OK
                    and isinstance(op.value, dict) and op.value.get("name") != "celery.chord_unlock")
    assert app_tasks and results == {"SUCCESS": app_tasks}, f"{backend}: {results}, {app_tasks} tasks succeeded"
