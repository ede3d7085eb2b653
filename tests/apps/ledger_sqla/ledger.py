"""The ledger service's Celery app and tasks.

Configuration from the environment:

- ``LEDGER_BROKER_URL`` (default a local RabbitMQ), ``LEDGER_RESULT_BACKEND`` (default a
  sqlite file through SQLAlchemy), ``LEDGER_DB_URL`` (see ledger_db);
- ``LEDGER_HARDENED=1``: late acks, redelivery when the worker dies, idempotent postings.
  Off by default: Celery's defaults.

Run a worker::

    celery -A ledger worker --loglevel=INFO
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from celery import Celery
from ledger_db import Entry, Payout, Settlement, Statement, Transfer, session
from sqlalchemy import select, update

HARDENED = os.environ.get("LEDGER_HARDENED", "0") == "1"

app = Celery("ledger")
app.conf.update(
    broker_url=os.environ.get("LEDGER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    result_backend=os.environ.get(
        "LEDGER_RESULT_BACKEND", f"db+sqlite:///{Path(__file__).resolve().parent / 'ledger-results.sqlite3'}"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)
if HARDENED:
    # A task cut by a crash is run again: every posting below checks whether it happened first.
    # A publish returns once the broker has the message (confirm_publish): a broker crash
    # right after .delay() must not swallow it.
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                    broker_transport_options={"confirm_publish": True})


def _bank_call(reference: str) -> str:
    """The core-banking API: 0.3 to 0.8 s, returns its booking reference."""
    digest = hashlib.sha256(reference.encode()).hexdigest()
    time.sleep(0.3 + int(digest[:6], 16) % 51 / 100)
    return "bk_" + digest[:16]


@app.task(bind=True)
def post_transfer(self, transfer_id: int) -> int:
    with session() as s:
        transfer = s.get(Transfer, transfer_id)
    if transfer is None:
        raise LookupError(f"transfer {transfer_id} does not exist")
    _bank_call(transfer.reference)
    with session() as s, s.begin():
        if HARDENED and s.scalars(select(Entry).where(Entry.transfer_id == transfer_id)).first():
            return transfer_id
        s.add_all([
            Entry(transfer_id=transfer_id, side="debit", account=transfer.from_account,
                  amount_cents=-transfer.amount_cents, task_id=self.request.id),
            Entry(transfer_id=transfer_id, side="credit", account=transfer.to_account,
                  amount_cents=transfer.amount_cents, task_id=self.request.id),
        ])
        s.execute(update(Transfer).where(Transfer.id == transfer_id).values(status="posted"))
    return transfer_id


@app.task(bind=True)
def send_statement(self, transfer_id: int) -> None:
    time.sleep(0.05)  # render and mail the statement
    with session() as s, s.begin():
        if HARDENED and s.scalars(select(Statement).where(Statement.transfer_id == transfer_id)).first():
            return
        s.add(Statement(transfer_id=transfer_id, task_id=self.request.id))


@app.task(bind=True)
def settle_payout(self, payout_id: int) -> str:
    with session() as s:
        payout = s.get(Payout, payout_id)
    if payout is None:
        raise LookupError(f"payout {payout_id} does not exist")
    bank_ref = _bank_call(payout.reference)
    with session() as s, s.begin():
        if HARDENED and s.scalars(select(Settlement).where(Settlement.payout_id == payout_id)).first():
            return bank_ref
        s.add(Settlement(payout_id=payout_id, bank_ref=bank_ref, task_id=self.request.id))
    return bank_ref
