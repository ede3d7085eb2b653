"""The sample system's workload: what the harness submits and how it reads the outcome back.

Responsibility: implement `harness.workload.Workload` for the sample system. One kind per
pattern, each unit with a unique key (``<run_id>:<kind>:<i>``), its expected outcome and the
idempotency keys of the effects it must leave exactly once:

============  ==========  =====================================================================
kind          expected    what it runs / effects (idempotency key prefixes, all ``...:<key>``)
============  ==========  =====================================================================
notification  complete    fire-and-forget fan-out: ``notification.<channel>`` per channel
order         complete    chain validate -> reserve -> charge -> confirm, then ``order.paid``:
                          ``inventory.reserved``, ``payment.charged``, ``ledger.debit``,
                          ``order.confirmed``, ``receipt.sent``
scan          complete    chord over N assets: ``scan.asset:<asset>`` each, ``scan.report``, and
                          ``oncall.paged`` (priority queue) when a finding is critical
event         complete    ``user.created`` fanned out: ``welcome.sent``, ``wallet.opened``
poison        dlq         an order that fails validation: DLQ after 1 attempt, no effects
declined      dlq         the partner answers 402: DLQ after 1 attempt; ``inventory.reserved``
exhausted     dlq         the partner answers 503 forever: DLQ after ``max_retries + 1``
                          attempts; ``inventory.reserved``
============  ==========  =====================================================================

Example:
    >>> w = SampleWorkload(Settings(scan_assets=2), kinds=("order", "poison"))
    >>> [(u.key, u.expected) for u in w.units(1, "r1")]
    [('r1:order:0', 'complete'), ('r1:poison:0', 'dlq')]
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amqp.exceptions import PreconditionFailed
from celery import Celery

from harness.errors import ConfigError
from harness.workload import KEY_HEADER, RUN_ID_HEADER, DLQEntry, EffectRecord, Unit
from sample_system.deployment import deploy_sample
from sample_system.dlq.queues import dead_letters_for
from sample_system.effects import EffectStore
from sample_system.services.orders import order_pipeline
from sample_system.services.scans import assets_for, pages_oncall, scan_workflow
from sample_system.settings import Settings

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("notification", "order", "scan", "event", "poison", "declined", "exhausted")
_DLQ_KINDS = {"poison", "declined", "exhausted"}
_ORDER_CARDS = {"order": "tok_visa", "declined": "tok_declined", "exhausted": "tok_unavailable", "poison": "tok_visa"}


def order_for(key: str, kind: str) -> dict[str, Any]:
    """The order a unit of `kind` submits (a poison order has a zero quantity).

    >>> order_for("r:poison:0", "poison")["items"][0]["qty"]
    0
    """
    return {
        "order_id": key,
        "customer": f"cust-{uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:8]}",
        "items": [{"sku": "SKU-RED-1", "qty": 0 if kind == "poison" else 2, "unit_price": 1250},
                  {"sku": "SKU-BLU-7", "qty": 1, "unit_price": 499}],
        "currency": "EUR",
        "card": _ORDER_CARDS[kind],
    }


class SampleWorkload:
    """`harness.workload.Workload` for the sample system (see the module docstring).

    `settings` must match the workers' (channels, asset count, DB URL); `kinds` picks a subset.
    """

    #: Its Locust users, for runs under load (``celery-chaos certify --load``).
    locustfile = str(Path(__file__).resolve().parents[1] / "loadtests" / "locustfile.py")

    def __init__(self, settings: Settings | None = None, *, kinds: Sequence[str] = KINDS,
                 store: EffectStore | None = None) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"unknown workload kind(s) {unknown or list(kinds)}: choose from {list(KINDS)}")
        self.settings = settings if settings is not None else Settings.from_env()
        self.kinds: tuple[str, ...] = tuple(kinds)
        self.store = store if store is not None else EffectStore(
            self.settings.db_url, idempotent=self.settings.idempotent_effects)

    # ------------------------------------------------------------------ deployment
    def prepare(self, stack: Any, **variant: Any) -> Any:
        """Deploy on `stack` (see `sample_system.deployment.deploy_sample`); a context manager of Deployment."""
        return deploy_sample(stack, SampleWorkload, **variant)

    # ------------------------------------------------------------------ Workload protocol
    def setup(self, app: Celery) -> None:
        """Declare every queue and the DLQ, purge them, and empty the effect store."""
        self.store.reset()
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3, timeout=10)
            for q in app.conf.task_queues or ():
                _declare_fresh(conn, q)
        dlq = dead_letters_for(app, effects=self.store)
        dlq.declare()
        dlq.purge()

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        if n_per_kind < 0:
            raise ConfigError(f"n_per_kind={n_per_kind} must be >= 0")
        if not run_id or ":" in run_id:
            raise ConfigError(f"run_id={run_id!r} must be non-empty and contain no ':' (it prefixes every key)")
        return [self._unit(kind, f"{run_id}:{kind}:{i}", run_id) for kind in self.kinds for i in range(n_per_kind)]

    def submit(self, app: Celery, unit: Unit) -> str:
        """Publish `unit`; return the root task id (a chord's root is its report callback)."""
        root = str(uuid.uuid4())
        headers = {KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id}
        key = unit.key
        if unit.kind == "notification":
            app.send_task("notifications.notify", args=(f"user-{key}", "Your weekly security digest is ready"),
                          kwargs={"key": key}, task_id=root, headers=headers)
        elif unit.kind in ("order", "poison", "declined", "exhausted"):
            order_pipeline(app, order_for(key, unit.kind), key=key, headers=headers, root_task_id=root).apply_async()
        elif unit.kind == "scan":
            scan_workflow(app, key, assets_for(key, self.settings.scan_assets), headers=headers,
                          report_task_id=root).apply_async()
        elif unit.kind == "event":
            app.send_task("events.publish", args=("user.created", {"user": f"user-{key}"}), kwargs={"key": key},
                          task_id=root, headers=headers)
        else:
            raise ConfigError(f"unit {unit.key!r} has kind {unit.kind!r}, not one of {list(KINDS)}")
        return root

    def effects(self) -> dict[str, list[EffectRecord]]:
        return self.store.effects_by_key()

    def dlq_entries(self, app: Celery) -> list[DLQEntry]:
        return dead_letters_for(app, effects=self.store).entries()

    # ------------------------------------------------------------------ helpers
    def expected_effects(self, kind: str, key: str) -> tuple[str, ...]:
        """Idempotency keys unit `key` of `kind` must leave exactly once."""
        if kind == "notification":
            return tuple(f"notification.{c}:{key}" for c in self.settings.notification_channels)
        if kind == "order":
            return tuple(f"{k}:{key}" for k in ("inventory.reserved", "payment.charged", "ledger.debit",
                                                 "order.confirmed", "receipt.sent"))
        if kind == "scan":
            assets = assets_for(key, self.settings.scan_assets)
            fx = [f"scan.asset:{a}" for a in assets] + [f"scan.report:{key}"]
            if pages_oncall(assets):
                fx.append(f"oncall.paged:{key}")
            return tuple(fx)
        if kind == "event":
            return (f"welcome.sent:{key}", f"wallet.opened:{key}")
        if kind in ("declined", "exhausted"):
            return (f"inventory.reserved:{key}",)
        return ()

    def _unit(self, kind: str, key: str, run_id: str) -> Unit:
        return Unit(key=key, kind=kind, expected="dlq" if kind in _DLQ_KINDS else "complete",
                    effects=self.expected_effects(kind, key), run_id=run_id)


def _declare_fresh(conn: Any, queue: Any) -> None:
    """Declare and purge `queue`; re-create it if it exists with other arguments."""
    with conn.channel() as ch:
        try:
            bound = queue(ch)
            bound.declare()
            bound.purge()
            return
        except PreconditionFailed as exc:
            log.warning("queue %s exists with other arguments (%s): deleting and re-declaring it", queue.name, exc)
    with conn.channel() as ch:
        bound = queue(ch)
        with contextlib.suppress(Exception):
            bound.delete()
        bound.declare()
