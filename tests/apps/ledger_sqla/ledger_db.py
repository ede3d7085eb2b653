"""The ledger's tables (SQLAlchemy 2.0) and its engine.

The database URL comes from ``LEDGER_DB_URL`` (default: ``ledger.sqlite3`` next to this file).
Each process makes its own engine: a prefork pool child must not reuse the parent's sqlite
connections.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

DEFAULT_DB_URL = f"sqlite:///{Path(__file__).resolve().parent / 'ledger.sqlite3'}"

_engines: dict[tuple[int, str], Engine] = {}


def db_url() -> str:
    return os.environ.get("LEDGER_DB_URL", DEFAULT_DB_URL)


def engine() -> Engine:
    key = (os.getpid(), db_url())
    if key not in _engines:
        # Pool workers write concurrently: wait for sqlite's lock rather than fail.
        _engines[key] = create_engine(key[1], connect_args={"timeout": 30})
    return _engines[key]


def session() -> Session:
    return Session(engine(), expire_on_commit=False)


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    from_account: Mapped[str] = mapped_column(String(34))
    to_account: Mapped[str] = mapped_column(String(34))
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=now)


class Entry(Base):
    """One side of a posted transfer: a debit of the payer, a credit of the payee."""

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"))
    side: Mapped[str] = mapped_column(String(6))
    account: Mapped[str] = mapped_column(String(34))
    amount_cents: Mapped[int]
    task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)


class Statement(Base):
    __tablename__ = "statements"

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"))
    task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)


class Payout(Base):
    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    account: Mapped[str] = mapped_column(String(34))
    amount_cents: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=now)


class Settlement(Base):
    __tablename__ = "settlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    bank_ref: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)


def create_tables() -> None:
    Base.metadata.create_all(engine())
