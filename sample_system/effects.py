"""The effect store: payments, ledger entries, report rows and deliveries, each written once per idempotency key.

Responsibility: durable side effects in a real SQL database (SQLite by default, any SQLAlchemy
URL by configuration) and the dead-letter failure records, plus reading them back per
workload key.

Idempotency: every effect row carries an idempotency key (``"payment.charged:order-7"``) and a
unique ``dedup_token``. With ``idempotent=True`` the token *is* the idempotency key, so a
redelivered task's second insert hits the unique constraint, is counted in
``duplicate_writes`` and reported as a duplicate - a success, not an error. With
``idempotent=False`` (the no-idempotency-key variant) the token is random, so a duplicate
execution writes a second row, which is exactly what the harness must detect.

Several effects written together (a charge and its ledger entry) go in one transaction, so
they are either all new or all duplicates.

Processes: the engine is created lazily per process id, because Celery's prefork pool forks
children from the worker and SQLAlchemy pools must not cross a fork. SQLite runs in WAL mode
with a busy timeout so several worker processes can write one file.

Example:
    >>> import tempfile, os
    >>> store = EffectStore("sqlite:///" + os.path.join(tempfile.mkdtemp(), "fx.db"))
    >>> store.create_schema()
    >>> store.apply([Effect("order-1", "payment.charged", "payment.charged:order-1", {"amount": 10})])
    True
    >>> store.apply([Effect("order-1", "payment.charged", "payment.charged:order-1", {"amount": 10})])
    False
    >>> [(r.kind, r.duplicate_writes) for r in store.effects_by_key()["order-1"]]
    [('payment.charged', 1)]
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from harness.workload import EffectRecord

_metadata = sa.MetaData()

effects_table = sa.Table(
    "sample_effects",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedup_token", sa.String(255), nullable=False, unique=True),
    sa.Column("idempotency_key", sa.String(255), nullable=False, index=True),
    sa.Column("key", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True, index=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("written_at", sa.Float, nullable=False),
    sa.Column("duplicate_writes", sa.Integer, nullable=False, default=0),
)

failures_table = sa.Table(
    "sample_dlq_failures",
    _metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=True, index=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("exception", sa.Text, nullable=False),
    sa.Column("traceback", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("failed_at", sa.Float, nullable=False),
    sa.Column("recorded", sa.Integer, nullable=False, default=1),
)


#: Attempts that concluded with a retry (the next attempt was published): a later delivery of
#: the same attempt is a stale copy whose ack was lost (see `Settings.retry_fork_guard`).
concluded_attempts_table = sa.Table(
    "sample_concluded_attempts",
    _metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.String(32), primary_key=True),
    sa.Column("concluded_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Effect:
    """One side effect to write: the unit `key`, its `kind`, the `idempotency_key` and a JSON `value`."""

    key: str
    kind: str
    idempotency_key: str
    value: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """Why a task was dead-lettered: the half of the DLQ envelope the broker message cannot carry."""

    task_id: str
    name: str
    key: str | None
    run_id: str | None
    exception: str
    traceback: str
    attempts: int
    failed_at: float
    recorded: int = 1


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes concurrent writers from
    # several worker processes wait for the lock instead of failing with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class EffectStore:
    """Idempotent effect writes and failure records over one SQLAlchemy URL (see module docstring)."""

    def __init__(self, db_url: str, *, idempotent: bool = True) -> None:
        self.db_url = db_url
        self.idempotent = idempotent
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ engine
    @property
    def engine(self) -> Engine:
        """This process's engine (recreated after a fork)."""
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                self._engine = self._create_engine()
                self._pid = os.getpid()
            return self._engine

    def _create_engine(self) -> Engine:
        url = sa.engine.make_url(self.db_url)
        if url.get_backend_name() == "sqlite":
            engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_on_connect)
            return engine
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() in ("postgresql", "mysql"):
            connect_args["connect_timeout"] = 10
        return sa.create_engine(url, pool_pre_ping=True, pool_timeout=10, connect_args=connect_args)

    def dispose(self) -> None:
        """Close this process's connections (the store stays usable)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None

    def create_schema(self) -> None:
        """Create the tables if missing (safe to call from several processes)."""
        _metadata.create_all(self.engine, checkfirst=True)

    def reset(self) -> None:
        """Delete every effect and failure record (a fresh run)."""
        self.create_schema()
        with self.engine.begin() as conn:
            conn.execute(effects_table.delete())
            conn.execute(failures_table.delete())
            conn.execute(concluded_attempts_table.delete())

    # ------------------------------------------------------------------ effects
    def apply(self, effects: Sequence[Effect]) -> bool:
        """Write `effects` in one transaction; True if new, False if already there (a duplicate).

        A duplicate is a success: the rows written the first time stay, and each one's
        ``duplicate_writes`` counter goes up so the duplicate execution stays observable.
        """
        if not effects:
            raise ValueError("apply() needs at least one Effect")
        now = time.time()
        rows = [
            {
                "dedup_token": e.idempotency_key if self.idempotent else f"{e.idempotency_key}#{uuid.uuid4().hex}",
                "idempotency_key": e.idempotency_key,
                "key": e.key,
                "kind": e.kind,
                "run_id": e.run_id,
                "task_id": e.task_id,
                "value": json.dumps(e.value, sort_keys=True, default=str),
                "written_at": now,
                "duplicate_writes": 0,
            }
            for e in effects
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(effects_table.insert(), rows)
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            conn.execute(
                effects_table.update()
                .where(effects_table.c.dedup_token.in_([r["dedup_token"] for r in rows]))
                .values(duplicate_writes=effects_table.c.duplicate_writes + 1)
            )
        return False

    def effects_by_key(self, keys: Iterable[str] | None = None, *, run_id: str | None = None) -> dict[str, list[EffectRecord]]:
        """Every stored effect grouped by workload key (optionally only `keys` / one `run_id`)."""
        q = sa.select(effects_table).order_by(effects_table.c.id)
        if run_id is not None:
            q = q.where(effects_table.c.run_id == run_id)
        wanted = None if keys is None else set(keys)
        out: dict[str, list[EffectRecord]] = defaultdict(list)
        with self.engine.connect() as conn:
            for row in conn.execute(q).mappings():
                if wanted is not None and row["key"] not in wanted:
                    continue
                out[row["key"]].append(
                    EffectRecord(
                        key=row["key"],
                        kind=row["kind"],
                        idempotency_key=row["idempotency_key"],
                        task_id=row["task_id"],
                        value=json.loads(row["value"]),
                        written_at=row["written_at"],
                        duplicate_writes=row["duplicate_writes"],
                    )
                )
        return dict(out)

    # ------------------------------------------------------------------ dead-letter failures
    def record_failure(self, rec: FailureRecord) -> None:
        """Upsert the failure record of a dead-lettered task (a redelivered failure updates it)."""
        row = {
            "task_id": rec.task_id, "name": rec.name, "key": rec.key, "run_id": rec.run_id,
            "exception": rec.exception, "traceback": rec.traceback, "attempts": rec.attempts,
            "failed_at": rec.failed_at, "recorded": 1,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(failures_table.insert(), [row])
            return
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            conn.execute(
                failures_table.update()
                .where(failures_table.c.task_id == rec.task_id)
                .values(exception=rec.exception, traceback=rec.traceback, attempts=rec.attempts,
                        failed_at=rec.failed_at, recorded=failures_table.c.recorded + 1)
            )

    # ------------------------------------------------------------------ attempts
    def conclude_attempt(self, task_id: str, attempt: str) -> bool:
        """Record that `attempt` of `task_id` ended by publishing its retry; False if already recorded."""
        try:
            with self.engine.begin() as conn:
                conn.execute(concluded_attempts_table.insert(),
                             [{"task_id": task_id, "attempt": attempt, "concluded_at": time.time()}])
            return True
        except IntegrityError:
            return False

    def attempt_concluded(self, task_id: str, attempt: str) -> bool:
        """Whether `attempt` of `task_id` already ended with a published retry."""
        q = sa.select(concluded_attempts_table.c.task_id).where(
            concluded_attempts_table.c.task_id == task_id, concluded_attempts_table.c.attempt == attempt)
        with self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def failures(self, task_ids: Iterable[str] | None = None) -> dict[str, FailureRecord]:
        """Failure records by task id (all, or only `task_ids`)."""
        q = sa.select(failures_table)
        ids = None if task_ids is None else list(task_ids)
        if ids is not None:
            if not ids:
                return {}
            q = q.where(failures_table.c.task_id.in_(ids))
        with self.engine.connect() as conn:
            return {
                r["task_id"]: FailureRecord(
                    task_id=r["task_id"], name=r["name"], key=r["key"], run_id=r["run_id"],
                    exception=r["exception"], traceback=r["traceback"], attempts=r["attempts"],
                    failed_at=r["failed_at"], recorded=r["recorded"],
                )
                for r in conn.execute(q).mappings()
            }
