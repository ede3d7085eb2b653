"""The merged history: an ordered, immutable sequence of ops, plus what reading it skipped.

Responsibility: the value checkers take. A `History` behaves like a tuple of `Op` (len,
iteration, indexing; a slice is a History) and has a few selectors in the user's words.

Reading the ops (conventions the recorder guarantees):

- ``index`` is the position in the merged history; ``time`` is CLOCK_MONOTONIC ns.
- ``process`` names one OS process (``worker-4242``, ``worker-4242.child-4250``,
  ``producer-1-4100``, ``nemesis``). One process may have several ops in flight (threads pool,
  concurrent publishers), so pair an invoke with its completion by ``(process, f,
  value["task_id"])``, not by process alone.
- An invoke that never completes (the process was killed) is indeterminate, like ``info``.
- When a prefork child dies, its parent records ``worker_lost`` and completes the child's open
  ``execute`` with ``info`` under the child's process name. If the child had already
  completed it, that later ``info`` is redundant: the first completion wins.

Example:
    >>> h = History([Op(0, 10, "producer-1", OpType.INVOKE, F.PUBLISH, {"task_id": "t1"}),
    ...              Op(1, 20, "producer-1", OpType.OK, F.PUBLISH, {"task_id": "t1"})])
    >>> len(h), h[1].type.value, len(h.where(type=OpType.OK))
    (2, 'ok', 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from harness.history.ops import F, Op, OpType

__all__ = ["F", "History", "Op", "OpType", "SkippedLine"]


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line `read_history` could not parse.

    `torn` is True for the last line of a file (a write cut short by SIGKILL: expected and
    harmless). A skipped line in the middle of a file means the file was damaged.
    """

    file: str
    line: int
    reason: str
    torn: bool

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "torn": self.torn}


@dataclass(frozen=True, slots=True)
class History(Sequence[Op]):
    """An ordered sequence of ops (the merged history of one run) and the lines skipped reading it.

    Example:
        >>> h = History([Op(0, 5, "nemesis", OpType.OK, F.FAULT_START, {"fault": "kill_worker"})])
        >>> [op.f for op in h]
        ['fault_start']
    """

    ops: tuple[Op, ...] = ()
    skipped: tuple[SkippedLine, ...] = field(default=(), compare=False)

    def __init__(self, ops: Iterable[Op] = (), skipped: Iterable[SkippedLine] = ()) -> None:
        object.__setattr__(self, "ops", tuple(ops))
        object.__setattr__(self, "skipped", tuple(skipped))

    # -- sequence protocol -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ops)

    @overload
    def __getitem__(self, i: int) -> Op: ...

    @overload
    def __getitem__(self, i: slice) -> History: ...

    def __getitem__(self, i: int | slice) -> Op | History:
        if isinstance(i, slice):
            return History(self.ops[i])
        return self.ops[i]

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __repr__(self) -> str:
        return f"History({len(self.ops)} ops, {len(self.skipped)} skipped lines)"

    # -- selectors -------------------------------------------------------------------------

    def filter(self, pred: Callable[[Op], bool]) -> History:
        """The ops for which `pred` is true, in order."""
        return History(op for op in self.ops if pred(op))

    def where(self, *, f: str | Iterable[str] | None = None, type: OpType | str | None = None,
              process: str | None = None) -> History:
        """The ops matching every given criterion (`f` may be one name or several).

        >>> h = History([Op(0, 1, "w", OpType.OK, F.RECEIVE, {}), Op(1, 2, "w", OpType.OK, F.EFFECT, {})])
        >>> [op.f for op in h.where(f=[F.EFFECT, F.DLQ])]
        ['effect']
        """
        fs = None if f is None else ({f} if isinstance(f, str) else set(f))
        t = None if type is None else OpType(type)
        return self.filter(lambda op: (fs is None or op.f in fs) and (t is None or op.type is t)
                           and (process is None or op.process == process))

    def by_task(self) -> dict[str, list[Op]]:
        """Ops that carry a ``value["task_id"]``, grouped by it (in history order)."""
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            tid = _value_get(op, "task_id")
            if tid is not None:
                out.setdefault(str(tid), []).append(op)
        return out

    def by_key(self) -> dict[str, list[Op]]:
        """Ops that carry a workload unit ``value["key"]``, grouped by it (in history order)."""
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            key = _value_get(op, "key")
            if key is not None:
                out.setdefault(str(key), []).append(op)
        return out

    def processes(self) -> list[str]:
        """Process names in order of first appearance."""
        return list(dict.fromkeys(op.process for op in self.ops))

    def run_ids(self) -> set[str]:
        """Every ``value["run_id"]`` seen (more than one means leftovers of another run)."""
        return {str(r) for op in self.ops if (r := _value_get(op, "run_id")) is not None}

    @property
    def torn_lines(self) -> int:
        """How many torn last lines were skipped (one per process killed mid-write)."""
        return sum(1 for s in self.skipped if s.torn)


def _value_get(op: Op, key: str) -> Any:
    v = op.value
    return v.get(key) if isinstance(v, dict) else None
