"""A small Celery app and workload for the engine tests (workers, faults, runs): not the sample system.

The worker subprocess imports it as ``engine_app:app`` (tests/engine on PYTHONPATH); the broker
and backend URLs come from the harness (``harness.workers.launch``), the rest from env:

- ``ENGINE_ACKS_LATE`` / ``ENGINE_REJECT_ON_WORKER_LOST`` (``1``/``0``): the reliability settings;
- ``ENGINE_IDEMPOTENT`` (default ``1``): the effect store applies each effect at most once
  (``0``: every execution applies it again: a non-idempotent effect);
- ``ENGINE_EFFECTS_DIR``: where the effect store lives (a directory, one file per application).

Tasks: ``engine.slow(key, seconds)`` applies effect ``charge`` for `key` *first*, then works for
`seconds` (a kill in that window cuts a task whose effect is already applied);
``engine.quick(key)`` applies effect ``quick`` and returns.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from harness.history import record_effect
from harness.workload import DLQEntry, EffectRecord, Unit

QUEUE = "engine"


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def create_app() -> Celery:
    app = Celery("engine_app", set_as_current=False)
    app.conf.update(
        broker_url=os.environ.get("CHAOS_BROKER_URL", "memory://"),
        result_backend=os.environ.get("CHAOS_BACKEND_URL") or None,
        task_default_queue=QUEUE,
        task_acks_late=_flag("ENGINE_ACKS_LATE", False),
        task_reject_on_worker_lost=_flag("ENGINE_REJECT_ON_WORKER_LOST", False),
        worker_prefetch_multiplier=1,
        worker_lost_wait=1.0,  # report a killed child's task after 1 s, not 10 s
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=4,
        broker_heartbeat=10,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=600,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )

    @app.task(name="engine.slow", shared=False)
    def slow(key: str, seconds: float = 1.0) -> str:
        apply_effect(key, "charge")
        deadline = time.monotonic() + min(float(seconds), 60.0)
        while time.monotonic() < deadline:
            time.sleep(0.02)
        return key

    @app.task(name="engine.quick", shared=False)
    def quick(key: str) -> str:
        apply_effect(key, "quick")
        return key

    return app


def effects_dir() -> Path:
    raw = os.environ.get("ENGINE_EFFECTS_DIR")
    if not raw:
        raise RuntimeError("ENGINE_EFFECTS_DIR is not set: the engine app's effect store needs a directory")
    d = Path(raw)
    d.mkdir(parents=True, exist_ok=True)
    return d


def apply_effect(key: str, kind: str) -> bool:
    """Apply effect `kind` for `key` in the file store; True when it was new. Records it in the history."""
    idem = f"{kind}:{key}"
    d = effects_dir()
    if _flag("ENGINE_IDEMPOTENT", True):
        try:
            fd = os.open(d / f"{idem}.effect", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            record_effect(key, kind, duplicate=True, idempotency_key=idem)
            return False
        os.close(fd)
    else:
        (d / f"{idem}.{uuid.uuid4().hex[:8]}.effect").write_text(str(os.getpid()))
    record_effect(key, kind, duplicate=False, idempotency_key=idem)
    return True


class EngineWorkload:
    """`harness.workload.Workload` for the engine app: `n` slow (or quick) units, one effect each."""

    kinds = ("slow", "quick")

    def __init__(self, store: Path, *, seconds: float = 1.5, kinds: tuple[str, ...] = ("slow",),
                 queue: str = QUEUE) -> None:
        self.store = Path(store)
        self.queue = queue
        self.seconds = seconds
        self.kinds_used = kinds

    def setup(self, app: Any) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        for f in self.store.glob("*.effect"):
            f.unlink()

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        out = []
        for kind in self.kinds_used:
            effect = "charge" if kind == "slow" else "quick"
            for i in range(n_per_kind):
                key = f"{run_id}:{kind}:{i}"
                out.append(Unit(key=key, kind=kind, expected="complete", effects=(f"{effect}:{key}",), run_id=run_id))
        return out

    def submit(self, app: Any, unit: Unit) -> str:
        if unit.kind == "slow":
            r = app.send_task("engine.slow", kwargs={"key": unit.key, "seconds": self.seconds},
                              queue=self.queue)
        else:
            r = app.send_task("engine.quick", kwargs={"key": unit.key}, queue=self.queue)
        return str(r.id)

    def effects(self) -> dict[str, list[EffectRecord]]:
        out: dict[str, list[EffectRecord]] = {}
        for f in sorted(self.store.glob("*.effect")):
            name = f.name[: -len(".effect")]
            kind, _, rest = name.partition(":")
            key = rest.split(".", 1)[0]  # a non-idempotent store adds ".<random>" per application
            out.setdefault(key, []).append(EffectRecord(key=key, kind=kind, idempotency_key=f"{kind}:{key}"))
        return out

    def dlq_entries(self, app: Any) -> list[DLQEntry]:
        return []


app = create_app()
