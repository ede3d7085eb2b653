"""A SQLAlchemy result backend on a local SQLite file, with outages that the backend really sees.

Responsibility: give the local stack a ``db+sqlite://`` result backend (Celery's database
backend, whose chords take the ``chord_unlock`` path) and the process-level control a backend
fault needs, though no server process exists: `kill` and `stop` make the database unusable in
the two ways a SQLite file fails in production, `start` restores it with every committed row.

What Celery 5.7's ``DatabaseBackend`` (SQLAlchemy 2.1) sees, measured in a pooled engine as a
prefork child holds it (running as root, so ``chmod`` takes nothing away and is not used):

- ``kill`` (``backend_outage(mode="kill_restart")``): the file is renamed away and a directory
  takes its path. A connection already open fails its next write with "attempt to write a
  readonly database" (SQLite notices its file was moved); a new one fails with "unable to open
  database file". Nothing can create an empty database in its place, so no write can go to a
  file that the restore would replace. `start` puts the file back.
- ``stop`` (``backend_outage(mode="graceful_stop")``): the harness holds an exclusive lock
  (``BEGIN EXCLUSIVE``): every reader and writer waits for SQLite's busy timeout (5 s by
  default) and fails with "database is locked". `start` rolls the lock back.

Example:
    >>> db = LocalSQLiteBackend()                   # a temp dir of its own, removed by close()
    >>> db.url.startswith("db+sqlite:////"), db.is_running()
    (True, True)
    >>> db.kill(); db.is_running()
    False
    >>> _ = db.start(); db.is_running()
    True
    >>> db.close()
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from harness.processes import reaper

__all__ = ["LocalSQLiteBackend"]


class LocalSQLiteBackend:
    """A SQLite result database in `base_dir` (a `harness.stack.base.ServerControl`)."""

    name = "sqlite-backend"
    #: What the backend_outage modes do here, as the fault's history op records it.
    outage_actions = {"kill_restart": "database file moved away (a directory in its place)",
                      "graceful_stop": "database locked (BEGIN EXCLUSIVE held by the harness)"}

    def __init__(self, base_dir: str | Path | None = None) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(reaper.make_temp_dir("chaos-sqlite-"))
        self.path = self.base_dir / "results.sqlite3"
        self._moved = self.base_dir / "results.sqlite3.away"
        self._lock: sqlite3.Connection | None = None
        # The nemesis heals from its own thread while a test may stop the stack from another.
        self._mutex = threading.Lock()

    @property
    def url(self) -> str:
        """The ``result_backend`` URL (four slashes: an absolute path)."""
        return f"db+sqlite:///{self.path}"

    @property
    def address(self) -> str:
        return str(self.path)

    @property
    def pids(self) -> list[int]:
        return []  # a file, no server process

    def spawn(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)

    def await_ready(self) -> None:
        """Nothing to wait for: Celery creates its tables on first use."""

    # -- ServerControl --------------------------------------------------------------
    def kill(self) -> None:
        """The database file disappears (renamed away, a directory in its place)."""
        with self._mutex:
            if self._moved.exists() or self.path.is_dir():
                return
            if self.path.exists():
                os.replace(self.path, self._moved)
            else:
                self._moved.touch()  # nothing written yet: restore an empty database
            self.path.mkdir()

    def stop(self) -> None:
        """The database is locked by the harness (``BEGIN EXCLUSIVE``)."""
        with self._mutex:
            if self._lock is not None or self.path.is_dir():
                return
            conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except BaseException:
                conn.close()
                raise
            self._lock = conn

    def start(self) -> LocalSQLiteBackend:
        """Undo `kill` or `stop`: the file back in place, the lock released."""
        with self._mutex:
            if self._lock is not None:
                try:
                    self._lock.execute("ROLLBACK")
                finally:
                    self._lock.close()
                    self._lock = None
            if self._moved.exists():
                if self.path.is_dir():
                    self.path.rmdir()
                os.replace(self._moved, self.path)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._lock is None and not self._moved.exists()

    def close(self) -> None:
        """Restore, then remove the directory when this object made it."""
        try:
            self.start()
        finally:
            if self._own_dir:
                reaper.remove_dir(self.base_dir)
