"""An endless supply of fresh workload units for open-ended load, and the ledger of what was submitted.

Responsibility: `UnitSource` turns the finite ``Workload.units(n_per_kind, run_id)`` into a
stream of units whose keys are unique across Locust users and processes; `UnitLedger` writes
every unit a process submits to ``<units dir>/units.<pid>.jsonl`` (before it is submitted), and
`read_units` reads a run's ledgers back so the checkers know each key's expected outcome.

How keys stay unique with no coordination between processes: each batch asks the workload for
units of a *sub-run* ``<run id>-<process token>-<batch>`` (so the keys differ), then stamps the
run's own id back into ``Unit.run_id`` (so messages carry the run id and are not "leftovers").
Keys therefore look like ``r7-3fa2c1-0:order:5``: still namespaced by the run id.

Example:
    >>> from harness.workload import Unit
    >>> class Echo:
    ...     kinds = ("a", "b")
    ...     def units(self, n, run_id):
    ...         return [Unit(f"{run_id}:{k}:{i}", k, "complete", run_id=run_id) for k in self.kinds for i in range(n)]
    >>> src = UnitSource(Echo(), "r1", batch_per_kind=2, token="p0")
    >>> [(u.key, u.run_id) for u in (src.next(), src.next(), src.next())]
    [('r1-p0-0:a:0', 'r1'), ('r1-p0-0:b:0', 'r1'), ('r1-p0-0:a:1', 'r1')]
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
from collections.abc import Iterable
from itertools import zip_longest
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.workload import Unit, Workload, validate_units

__all__ = ["UnitLedger", "UnitSource", "read_units"]


class UnitSource:
    """Fresh units of `workload`, kinds interleaved, keys unique per process (see the module docstring).

    Args:
        workload: any `harness.workload.Workload`.
        run_id: the run's id (no ``:``).
        kinds: restrict to these kinds (default: all of ``workload.kinds``).
        batch_per_kind: how many units of each kind one ``units()`` call makes.
        token: what makes this process's keys unique (default: 6 random hex digits).

    Example: ``UnitSource(SampleWorkload(settings), "r7", kinds=("order",)).next()``.
    """

    def __init__(self, workload: Workload, run_id: str, *, kinds: Iterable[str] = (), batch_per_kind: int = 32,
                 token: str | None = None) -> None:
        if not run_id or ":" in run_id:
            raise ConfigError(f"run_id={run_id!r} must be non-empty and contain no ':' (it prefixes every key)")
        if batch_per_kind < 1:
            raise ConfigError(f"batch_per_kind={batch_per_kind} must be >= 1")
        available = tuple(getattr(workload, "kinds", ()))
        wanted = tuple(kinds)
        unknown = [k for k in wanted if k not in available]
        if unknown:
            raise ConfigError(f"unknown workload kind(s) {unknown}: {type(workload).__name__} offers {list(available)}")
        self.workload = workload
        self.run_id = run_id
        self.kinds = wanted or available
        if not self.kinds:
            raise ConfigError(f"{type(workload).__name__} has no kinds: set its `kinds` attribute")
        self.batch_per_kind = batch_per_kind
        self.token = token if token is not None else secrets.token_hex(3)
        self._batch = 0
        self._pending: list[Unit] = []
        self._lock = threading.Lock()  # greenlet-safe once Locust has patched threading

    @property
    def issued_batches(self) -> int:
        return self._batch

    def next(self) -> Unit:
        """The next unit (a new batch is made when the previous one is used up)."""
        with self._lock:
            if not self._pending:
                self._pending = self._make_batch()
            return self._pending.pop()

    def _make_batch(self) -> list[Unit]:
        sub_run = f"{self.run_id}-{self.token}-{self._batch}"
        self._batch += 1
        made = validate_units(self.workload, self.workload.units(self.batch_per_kind, sub_run), sub_run)
        by_kind: dict[str, list[Unit]] = {}
        for u in made:
            if u.kind in self.kinds:
                by_kind.setdefault(u.kind, []).append(u)
        if not by_kind:
            raise ConfigError(
                f"{type(self.workload).__name__}.units({self.batch_per_kind}, {sub_run!r}) made no unit of the kinds "
                f"{list(self.kinds)}: check the workload's kinds"
            )
        interleaved = [u for group in zip_longest(*by_kind.values()) for u in group if u is not None]
        stamped = [dataclasses.replace(u, run_id=self.run_id) for u in interleaved]
        stamped.reverse()  # pop() from the end hands them out in order
        return stamped


class UnitLedger:
    """Appends each submitted unit, as one JSON line, to ``<directory>/units.<pid>.jsonl``.

    One ``os.write`` per line on an ``O_APPEND`` descriptor, like the history recorder, so a
    SIGKILLed Locust process loses at most a torn last line. A forked process (Locust's
    ``--processes``) opens its own file on its first write.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with UnitLedger(d) as ledger:
        ...     ledger.write(Unit("r1:a:0", "a", "complete", run_id="r1"), task_id="t1")
        >>> [u.key for u in read_units(d)]
        ['r1:a:0']
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def write(self, unit: Unit, *, task_id: str | None = None) -> None:
        """Record that `unit` is about to be submitted (its root task id when known)."""
        line = json.dumps({**unit.to_dict(), "task_id": task_id}, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            pid = os.getpid()
            if self._fd is None or self._pid != pid:
                self._fd = os.open(self.directory / f"units.{pid}.jsonl",
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                self._pid = pid
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> UnitLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_units(directory: str | Path) -> list[Unit]:
    """Every unit in a run's ledgers (``units.*.jsonl``), in file then line order; a torn line is skipped.

    Build the checkers' expectations from it:
    ``Expectations(expected_outcomes={u.key: u.expected for u in read_units(d)})``.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"no units ledger at {str(d)!r}: pass the run's units directory "
                                "(default <history dir>/units)")
    out: list[Unit] = []
    for path in sorted(d.glob("units.*.jsonl")):
        for raw in path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                out.append(_unit_from_dict(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed process
    return out


def _unit_from_dict(d: dict[str, Any]) -> Unit:
    return Unit(key=str(d["key"]), kind=str(d["kind"]), expected=d["expected"],
                effects=tuple(d.get("effects") or ()), run_id=str(d.get("run_id") or ""))
