"""Follow a run's history directory as its processes write it (for event triggers).

Responsibility: return the ops appended to ``<dir>/*.jsonl`` since the last poll, complete
lines only (a line being written is kept for the next poll), and keep the set of executions
that are open right now (``execute`` invoke with no completion yet), so the nemesis can find
"the pool child running task X" without asking the worker.

Reading is by byte offset per file: a poll costs a directory scan plus one read per file that
grew, so polling every few milliseconds is cheap next to the workers. Each line is read by
`harness.history.parse_op_line`, as `read_history` reads it: the tail sees the typed ops the
checkers later judge, never its own reading of the file format.

Example:
    >>> import tempfile, pathlib
    >>> from harness.history import HistoryRecorder
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> tail = HistoryTail(d)
    >>> with HistoryRecorder(d, "w.child-7") as rec:
    ...     _ = rec.record("execute", "invoke", {"task_id": "t1", "name": "slow", "pid": 7})
    >>> [op.f for op in tail.poll()], list(tail.open_executions())
    (['execute'], [{'task_id': 't1', 'name': 'slow', 'pid': 7, 'process': 'w.child-7'}])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.history import Op, OpType, parse_op_line
from harness.history.ops import F

__all__ = ["HistoryTail"]

_MAX_READ = 4 * 1024 * 1024  # per file and poll: a burst is read over several polls


class HistoryTail:
    """Incremental reader of a history directory (see the module docstring)."""

    def __init__(self, directory: Path | str, *, skip_processes: tuple[str, ...] = ("nemesis",)) -> None:
        self.directory = Path(directory)
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}
        self._open: dict[tuple[str, str], dict[str, Any]] = {}
        #: How long completed executions took (ns, bounded), to say why a kill found nothing to cut.
        self.durations_ns: list[int] = []
        self._started: dict[tuple[str, str], int] = {}
        self._skip = skip_processes
        self.ops_seen = 0

    def poll(self) -> list[Op]:
        """The ops appended since the last poll, file by file."""
        out: list[Op] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        for entry in entries:
            if not entry.name.endswith(".jsonl"):
                continue
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            offset = self._offsets.get(entry.name, 0)
            if size <= offset:
                continue
            try:
                with open(entry.path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(min(size - offset, _MAX_READ))
            except FileNotFoundError:
                continue
            self._offsets[entry.name] = offset + len(data)
            data = self._partial.pop(entry.name, b"") + data
            lines = data.split(b"\n")
            if lines and lines[-1]:
                self._partial[entry.name] = lines[-1]
            for raw in lines[:-1]:
                op = parse_op_line(raw)
                # None: a torn line of a killed process, which the merged history skips too.
                if op is None or op.process in self._skip:
                    continue
                self._track(op)
                out.append(op)
        self.ops_seen += len(out)
        return out

    def _track(self, op: Op) -> None:
        if op.f != F.EXECUTE:
            return
        v: dict[str, Any] = op.value if isinstance(op.value, dict) else {}
        tid = v.get("task_id")
        if tid is None:
            return
        key = (op.process, str(tid))
        if op.type is OpType.INVOKE:
            self._open[key] = {"task_id": tid, "name": v.get("name"), "pid": v.get("pid"), "process": op.process}
            if len(self._started) < 100_000:
                self._started[key] = op.time
        else:
            self._open.pop(key, None)
            t0 = self._started.pop(key, None)
            if t0 is not None and len(self.durations_ns) < 10_000:
                self.durations_ns.append(op.time - t0)

    def describe_durations(self) -> str:
        """The observed task durations in words, e.g. "12 executions took 2-9 ms (median 4 ms)".

        >>> t = HistoryTail("/nonexistent"); t.durations_ns = [2_000_000, 4_000_000, 9_000_000]
        >>> t.describe_durations()
        '3 executions took 2-9 ms (median 4 ms)'
        """
        d = sorted(self.durations_ns)
        if not d:
            return "no execution completed"
        ms = [x / 1e6 for x in d]
        return f"{len(d)} executions took {ms[0]:.0f}-{ms[-1]:.0f} ms (median {ms[len(ms) // 2]:.0f} ms)"

    def open_executions(self) -> Iterator[dict[str, Any]]:
        """Executions started and not completed, as of the last poll (oldest first)."""
        return iter(list(self._open.values()))

    def forget_pid(self, pid: int) -> None:
        """Drop open executions of a process the nemesis killed (it will never complete them)."""
        for key, v in list(self._open.items()):
            if v.get("pid") == pid:
                del self._open[key]
