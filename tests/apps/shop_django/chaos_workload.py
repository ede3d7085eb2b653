"""The shop's adapter for celery-chaos: what to submit, and which rows prove each unit happened.

This file is the only one in the project that knows about the harness. The shop itself (the
``shop`` project and the ``orders`` app) is plain Django + Celery.

Kinds, and the effects (rows) each unit must leave exactly once:

========  ==============================================  =========================================
kind      what runs                                       declared effects (``<kind>:<unit key>``)
========  ==============================================  =========================================
order     chain ``charge_order`` -> ``send_receipt``      ``payment:<key>``, ``email.receipt:<key>``
checkout  chord of 3 ``reserve_item`` -> ``finalize_...``  ``reservation:<key>/<sku>`` x3,
                                                          ``shipment:<key>``
========  ==============================================  =========================================

Run it from the project directory (where manage.py is)::

    PYTHONPATH=. celery-chaos certify --app shop.celery:app --workload chaos_workload:ShopWorkload
    SHOP_HARDENED=1 PYTHONPATH=. celery-chaos certify --app shop.celery:app --workload chaos_workload:ShopWorkload
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.stack.base import Role
from harness.workload import KEY_HEADER, RUN_ID_HEADER, Deployment, DLQEntry, EffectRecord, Unit

PROJECT_DIR = Path(__file__).resolve().parent
APP = "shop.celery:app"
SETTINGS_MODULE = "shop.settings"
KINDS: tuple[str, ...] = ("order", "checkout")

if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))
#: What SHOP_HARDENED=1 changes on the publishing side (the rest is worker-side). The producer
#: publishes from the harness's process, whose app read SHOP_HARDENED once, at import: prepare()
#: applies the deployment's value to it and restores the app afterwards.
PRODUCER_HARDENING: dict[str, Any] = {"broker_transport_options": {"confirm_publish": True}}


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "0").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"{name}={os.environ[name]!r} is not a switch: set it to 1 (on) or 0 (off)")
    return raw in ("1", "true", "yes", "on")


def _use_database(db_path: str) -> None:
    """Set Django up in this (the harness's) process, reading and writing the sqlite file `db_path`.

    Django reads its settings once per process; a later deployment (another temp dir) only
    changes the file name, so the open connection of this thread is closed and reopened there.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    os.environ["SHOP_DB_PATH"] = db_path
    import django
    from django.conf import settings
    from django.db import connections

    django.setup()
    if settings.DATABASES["default"]["NAME"] != db_path:
        connections["default"].close()
        settings.DATABASES["default"]["NAME"] = db_path
        connections["default"].settings_dict["NAME"] = db_path


class ShopWorkload:
    """`harness.workload.Workload` for the shop (see the module docstring).

    `hardened`: deploy with ``SHOP_HARDENED=1`` (late acks, reject on worker lost, idempotent
    writes); default: the ``SHOP_HARDENED`` variable of the process running the certification.
    """

    dead_letter_queue = False  # the shop has no DLQ: a task that fails stays failed

    def __init__(self, *, hardened: bool | None = None, kinds: tuple[str, ...] = KINDS) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"unknown shop workload kind(s) {unknown or list(kinds)}: choose from {list(KINDS)}")
        self.hardened = _env_flag("SHOP_HARDENED") if hardened is None else bool(hardened)
        self.kinds = tuple(kinds)
        self.queues: tuple[str, ...] = ("celery",)

    # ------------------------------------------------------------------ deployment
    @contextlib.contextmanager
    def prepare(self, stack: Any, *, concurrency: int = 2, hardened: bool | None = None,
                **variant: Any) -> Iterator[Deployment]:
        """Deploy the shop on `stack`: a fresh sqlite DB in a temp dir, the workers' environment."""
        if variant:
            raise ConfigError(f"unknown shop variant(s) {sorted(variant)}: the shop knows only hardened=True/False")
        hardened = self.hardened if hardened is None else bool(hardened)
        producer_apps: list[tuple[Any, dict[str, Any]]] = []
        tmp = Path(tempfile.mkdtemp(prefix="chaos-shop-"))
        saved = {k: os.environ.get(k) for k in ("DJANGO_SETTINGS_MODULE", "SHOP_DB_PATH")}
        try:
            db_path = str(tmp / "shop.sqlite3")
            _use_database(db_path)
            from shop.celery import app as producer_app

            # Import the task modules now, as the shop's web process does through its views (and a
            # worker through autodiscover_tasks): a @shared_task module imported only later would
            # not be registered on an app the harness has already finalized and closed.
            producer_app.loader.import_default_modules()

            env = {
                "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
                # The worker imports `shop` from the project directory, like `celery -A shop worker` run there.
                "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]),
                "SHOP_DB_PATH": db_path,
                "SHOP_HARDENED": "1" if hardened else "0",
                "SHOP_BROKER_URL": stack.urls.url_for(Role.WORKER_BROKER),
                "SHOP_RESULT_BACKEND": f"db+sqlite:///{tmp / 'celery-results.sqlite3'}",
            }
            workload = type(self)(hardened=hardened, kinds=self.kinds)
            # The producer is this process's app, configured once at import: give it this
            # deployment's result backend (the harness keeps an app's own db+sqlite backend, and
            # producer and workers must share the file: a chord's group is saved by the producer
            # and read by the workers' chord_unlock) and publishing settings; restored on exit.
            producer_conf = {"result_backend": env["SHOP_RESULT_BACKEND"],
                             **(PRODUCER_HARDENING if hardened else {k: {} for k in PRODUCER_HARDENING})}
            producer_apps.append((producer_app, {k: producer_app.conf.get(k) for k in producer_conf}))
            producer_app.conf.update(producer_conf)
            yield Deployment(app=APP, workload=workload, env=env, queues=self.queues, concurrency=concurrency,
                             producer_app=producer_app,
                             description=f"Django shop ({'hardened' if hardened else 'Celery defaults'})")
        finally:
            for app, conf in producer_apps:
                app.conf.update(conf)
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ Workload protocol
    def setup(self, app: Any) -> None:
        """Migrate the database, empty the shop's tables, purge the task queue."""
        from django.core.management import call_command
        from orders.models import Email, Order, Payment, Reservation, Shipment

        call_command("migrate", verbosity=0, interactive=False)
        for model in (Email, Shipment, Reservation, Payment, Order):
            model.objects.all().delete()
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3, timeout=10)
            for name in self.queues:
                queue = app.amqp.queues[name](conn.default_channel)
                queue.declare()
                queue.purge()

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        if not run_id or ":" in run_id:
            raise ConfigError(f"run_id={run_id!r} must be non-empty and contain no ':' (it prefixes every key)")
        return [Unit(key=f"{run_id}:{kind}:{i}", kind=kind, expected="complete",
                     effects=self.expected_effects(kind, f"{run_id}:{kind}:{i}"), run_id=run_id)
                for kind in self.kinds for i in range(n_per_kind)]

    def expected_effects(self, kind: str, key: str) -> tuple[str, ...]:
        from orders.catalog import CHECKOUT_ITEMS

        if kind == "order":
            return (f"payment:{key}", f"email.receipt:{key}")
        return (*(f"reservation:{key}/{sku}" for sku, _qty in CHECKOUT_ITEMS), f"shipment:{key}")

    def submit(self, app: Any, unit: Unit) -> str:
        """Create the order through the ORM and start its flow, as the shop's views do."""
        from orders.models import Order
        from orders.services import checkout_flow, payment_flow

        # @shared_task signatures publish through the current app: make it the app the harness
        # configured for this stack (current per thread, and the harness submits from its own).
        app.set_current()
        order = Order.objects.create(reference=unit.key, customer_email=f"{unit.kind}-{abs(hash(unit.key)) % 10**6}"
                                     "@example.com", amount_cents=2999)
        flow = payment_flow(order) if unit.kind == "order" else checkout_flow(order)
        result = flow.apply_async(headers={KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id})
        return str(result.id)

    def effects(self) -> dict[str, list[EffectRecord]]:
        """Every effect row of the shop's tables, by order reference (the unit key)."""
        from orders.models import Email, Payment, Reservation, Shipment

        out: dict[str, list[EffectRecord]] = {}

        def add(ref: str, kind: str, idem: str, row: Any, **value: Any) -> None:
            out.setdefault(ref, []).append(EffectRecord(
                key=ref, kind=kind, idempotency_key=idem, task_id=row.task_id or None, value=value,
                written_at=row.created_at.timestamp() if hasattr(row, "created_at") else row.sent_at.timestamp()))

        for p in Payment.objects.select_related("order").order_by("pk"):
            add(p.order.reference, "payment", f"payment:{p.order.reference}", p, amount_cents=p.amount_cents,
                provider_ref=p.provider_ref)
        for e in Email.objects.select_related("order").order_by("pk"):
            add(e.order.reference, f"email.{e.template}", f"email.{e.template}:{e.order.reference}", e, to=e.to)
        for r in Reservation.objects.select_related("order").order_by("pk"):
            add(r.order.reference, "reservation", f"reservation:{r.order.reference}/{r.sku}", r, quantity=r.quantity)
        for s in Shipment.objects.select_related("order").order_by("pk"):
            add(s.order.reference, "shipment", f"shipment:{s.order.reference}", s, items=s.items)
        return out

    def dlq_entries(self, app: Any) -> list[DLQEntry]:
        return []
