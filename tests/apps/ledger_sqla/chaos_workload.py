"""The ledger's adapter for celery-chaos: what to submit, and which rows prove each unit happened.

The ledger service (``ledger.py``, ``ledger_db.py``) is plain Celery + SQLAlchemy; only this
file knows about the harness.

========  ============================================  ===============================================
kind      what runs                                     declared effects (``<kind>:<unit key>``)
========  ============================================  ===============================================
transfer  chain ``post_transfer`` -> ``send_statement``  ``debit:<key>``, ``credit:<key>``, ``statement:<key>``
payout    ``settle_payout``                             ``settlement:<key>``
========  ============================================  ===============================================

Run it from this directory::

    PYTHONPATH=. celery-chaos certify --app ledger:app --workload chaos_workload:LedgerWorkload
    LEDGER_HARDENED=1 PYTHONPATH=. celery-chaos certify --app ledger:app --workload chaos_workload:LedgerWorkload
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
APP = "ledger:app"
KINDS: tuple[str, ...] = ("transfer", "payout")
#: What LEDGER_HARDENED=1 changes on the publishing side (the rest is worker-side). The producer
#: publishes from the harness's process, whose app read LEDGER_HARDENED once, at import: prepare()
#: applies the deployment's value to it and restores the app afterwards.
PRODUCER_HARDENING: dict[str, Any] = {"broker_transport_options": {"confirm_publish": True}}

if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "0").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"{name}={os.environ[name]!r} is not a switch: set it to 1 (on) or 0 (off)")
    return raw in ("1", "true", "yes", "on")


class LedgerWorkload:
    """`harness.workload.Workload` for the ledger (see the module docstring).

    `hardened`: deploy with ``LEDGER_HARDENED=1``; default: that variable in this process.
    """

    dead_letter_queue = False  # no DLQ: a failed posting stays failed

    def __init__(self, *, hardened: bool | None = None, kinds: tuple[str, ...] = KINDS) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"unknown ledger workload kind(s) {unknown or list(kinds)}: choose from {list(KINDS)}")
        self.hardened = _env_flag("LEDGER_HARDENED") if hardened is None else bool(hardened)
        self.kinds = tuple(kinds)
        self.queues: tuple[str, ...] = ("celery",)

    @contextlib.contextmanager
    def prepare(self, stack: Any, *, concurrency: int = 2, hardened: bool | None = None,
                **variant: Any) -> Iterator[Deployment]:
        """Deploy the ledger on `stack`: a fresh sqlite file in a temp dir, the workers' environment."""
        if variant:
            raise ConfigError(f"unknown ledger variant(s) {sorted(variant)}: the ledger knows only hardened=True/False")
        hardened = self.hardened if hardened is None else bool(hardened)
        producer_apps: list[tuple[Any, dict[str, Any]]] = []
        tmp = Path(tempfile.mkdtemp(prefix="chaos-ledger-"))
        saved = os.environ.get("LEDGER_DB_URL")
        try:
            db_url = f"sqlite:///{tmp / 'ledger.sqlite3'}"
            # This process (the producer, the effect reader) uses the same file as the workers.
            os.environ["LEDGER_DB_URL"] = db_url
            from ledger import app as producer_app

            env = {
                "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]),
                "LEDGER_DB_URL": db_url,
                "LEDGER_HARDENED": "1" if hardened else "0",
                "LEDGER_BROKER_URL": stack.urls.url_for(Role.WORKER_BROKER),
                "LEDGER_RESULT_BACKEND": f"db+sqlite:///{tmp / 'ledger-results.sqlite3'}",
            }
            workload = type(self)(hardened=hardened, kinds=self.kinds)
            # The producer is this process's app, configured once at import: give it this
            # deployment's result backend (the harness keeps an app's own db+sqlite backend, and
            # producer and workers must share the file: a chord's group is saved by the producer
            # and read by the workers' chord_unlock) and publishing settings; restored on exit.
            producer_conf = {"result_backend": env["LEDGER_RESULT_BACKEND"],
                             **(PRODUCER_HARDENING if hardened else {k: {} for k in PRODUCER_HARDENING})}
            producer_apps.append((producer_app, {k: producer_app.conf.get(k) for k in producer_conf}))
            producer_app.conf.update(producer_conf)
            yield Deployment(app=APP, workload=workload, env=env, queues=self.queues,
                             concurrency=concurrency, producer_app=producer_app,
                             description=f"SQLAlchemy ledger ({'hardened' if hardened else 'Celery defaults'})")
        finally:
            for app, conf in producer_apps:
                app.conf.update(conf)
            with contextlib.suppress(Exception):
                from ledger_db import _engines

                for key in [k for k in _engines if k[1] == os.environ.get("LEDGER_DB_URL")]:
                    _engines.pop(key).dispose()
            if saved is None:
                os.environ.pop("LEDGER_DB_URL", None)
            else:
                os.environ["LEDGER_DB_URL"] = saved
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ Workload protocol
    def setup(self, app: Any) -> None:
        """Create the tables, empty them, purge the task queue."""
        from ledger_db import Entry, Payout, Settlement, Statement, Transfer, create_tables, session
        from sqlalchemy import delete

        create_tables()
        with session() as s, s.begin():
            for model in (Entry, Statement, Settlement, Transfer, Payout):
                s.execute(delete(model))
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3, timeout=10)
            for name in self.queues:
                queue = app.amqp.queues[name](conn.default_channel)
                queue.declare()
                queue.purge()

    def units(self, n_per_kind: int, run_id: str) -> list[Unit]:
        if not run_id or ":" in run_id:
            raise ConfigError(f"run_id={run_id!r} must be non-empty and contain no ':' (it prefixes every key)")
        out = []
        for kind in self.kinds:
            for i in range(n_per_kind):
                key = f"{run_id}:{kind}:{i}"
                effects = ((f"debit:{key}", f"credit:{key}", f"statement:{key}") if kind == "transfer"
                           else (f"settlement:{key}",))
                out.append(Unit(key=key, kind=kind, expected="complete", effects=effects, run_id=run_id))
        return out

    def submit(self, app: Any, unit: Unit) -> str:
        """Create the transfer or payout row, then publish its task(s), as the ledger's API does."""
        from ledger import post_transfer, send_statement, settle_payout
        from ledger_db import Payout, Transfer, session

        headers = {KEY_HEADER: unit.key, RUN_ID_HEADER: unit.run_id}
        with session() as s, s.begin():
            if unit.kind == "transfer":
                row: Any = Transfer(reference=unit.key, from_account="DE02100100109307118603",
                                    to_account="DE02500105170137075030", amount_cents=12_500)
            else:
                row = Payout(reference=unit.key, account="FR7630006000011234567890189", amount_cents=4_000)
            s.add(row)
        if unit.kind == "transfer":
            result = (post_transfer.s(row.id) | send_statement.s()).apply_async(headers=headers)
        else:
            result = settle_payout.apply_async((row.id,), headers=headers)
        return str(result.id)

    def effects(self) -> dict[str, list[EffectRecord]]:
        """Every posting, statement and settlement, by transfer / payout reference (the unit key)."""
        from ledger_db import Entry, Payout, Settlement, Statement, Transfer, session
        from sqlalchemy import select

        out: dict[str, list[EffectRecord]] = {}

        def add(ref: str, kind: str, row: Any, **value: Any) -> None:
            out.setdefault(ref, []).append(EffectRecord(
                key=ref, kind=kind, idempotency_key=f"{kind}:{ref}", task_id=row.task_id, value=value,
                written_at=row.created_at.timestamp()))

        with session() as s:
            for entry, ref in s.execute(select(Entry, Transfer.reference).join(Transfer).order_by(Entry.id)):
                add(ref, entry.side, entry, account=entry.account, amount_cents=entry.amount_cents)
            for st, ref in s.execute(select(Statement, Transfer.reference).join(Transfer).order_by(Statement.id)):
                add(ref, "statement", st)
            for se, ref in s.execute(select(Settlement, Payout.reference).join(Payout).order_by(Settlement.id)):
                add(ref, "settlement", se, bank_ref=se.bank_ref)
        return out

    def dlq_entries(self, app: Any) -> list[DLQEntry]:
        return []
