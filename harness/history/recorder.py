"""Append-only, per-process history files that survive SIGKILL.

Responsibility: turn ``record(f, type, value)`` calls of one OS process into JSON lines in
``<directory>/<process>.<pid>.jsonl``, one ``os.write`` per line on an ``O_APPEND`` descriptor.

Durability, deliberately: each line is handed to the kernel before ``record`` returns, so a
process killed with SIGKILL loses nothing it recorded and leaves at most one torn last line
(``read_history`` skips and counts it). There is no ``fsync``: the harness must survive the
death of the processes under test, not a crash of the machine, and an fsync per op would cost
milliseconds per task.

Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for every process of a machine),
read under the recorder's lock so a file's lines are in time order. ``index`` is local to the
file; the merged history reassigns it.

Fork: a recorder inherited by a forked child (Celery's prefork pool) notices the new pid on
its next ``record`` and opens its own file as process ``"<parent process>.child-<pid>"``
(`child_process_name`), so a killed child's successor records under a new process name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with HistoryRecorder(d, "nemesis") as rec:
    ...     op = rec.record("fault_start", "invoke", {"fault": "kill_worker"})
    >>> (op.process, op.type.value, op.f, op.index)
    ('nemesis', 'invoke', 'fault_start', 0)
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from harness.history.ops import Op, OpType

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._@-]")

# Every live recorder of this process, so the at-fork hook can give each a fresh lock in the
# child: a lock held by another thread at fork time would otherwise stay locked forever there.
_LIVE: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()


def child_process_name(parent_process: str, pid: int) -> str:
    """The process name a forked child of `parent_process` records under.

    >>> child_process_name("worker-100", 101)
    'worker-100.child-101'
    """
    return f"{parent_process}.child-{pid}"


def history_file_name(process: str, pid: int) -> str:
    """The file name a process's ops go to (characters unsafe in file names become ``_``).

    >>> history_file_name("worker-100.child-101", 101)
    'worker-100.child-101.101.jsonl'
    """
    return f"{_UNSAFE_FILENAME_CHARS.sub('_', process)}.{pid}.jsonl"


# One encoder, built once: json.dumps(..., separators=...) would build a new one per call.
# Values that are not JSON (a datetime, an exception) are written as their str, never dropped.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_F_JSON: dict[str, str] = {}  # f name -> its JSON plus the following key: f names are few


def _to_optype(type_: OpType | str) -> OpType:
    if isinstance(type_, OpType):
        return type_
    try:
        return OpType(type_)
    except ValueError:
        raise ValueError(
            f"op type {type_!r} is not one of invoke, ok, fail, info: "
            "use OpType.INVOKE/OK/FAIL/INFO (or their string values)"
        ) from None


class HistoryRecorder:
    """Records one process's ops to its own append-only JSON-lines file. Thread-safe.

    Args:
        directory: the run's history directory (created if missing); every process of the
            run writes its own file there and ``read_history(directory)`` merges them.
        process: the Jepsen process name written into each op (``"nemesis"``, ``"producer-1"``,
            ``"worker-4242"``). Names must be unique per OS process within a run.

    Example:
        >>> import tempfile, pathlib
        >>> rec = HistoryRecorder(pathlib.Path(tempfile.mkdtemp()), "harness")
        >>> rec.record("phase", "ok", {"phase": "heal"}).value
        {'phase': 'heal'}
        >>> rec.close()
    """

    def __init__(self, directory: Path | str, process: str) -> None:
        if not process or not isinstance(process, str):
            raise ValueError(f"process must be a non-empty string naming the recording process, got {process!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False
        self._open(process, os.getpid())
        _LIVE.add(self)

    # -- file handling -------------------------------------------------------------------

    def _open(self, process: str, pid: int) -> None:
        self.process = process
        self._process_json = _encode(process)
        self.pid = pid
        self._next_index = 0
        self.path = self.directory / history_file_name(process, pid)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        # A reused pid may meet a file whose writer was killed mid-line: start on a fresh line
        # so the torn fragment does not swallow our first op.
        size = os.fstat(fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd = fd

    def _after_fork_in_child(self) -> None:
        # Called from the at-fork hook: the inherited lock may be held by a thread that does
        # not exist in the child. The inherited fd still points at the parent's file; it is
        # replaced lazily on the next record() (so children that never record create no file).
        self._lock = threading.Lock()

    def _reopen_for_child(self, pid: int) -> None:
        old_fd = self._fd
        self._open(child_process_name(self.process, pid), pid)
        if old_fd is not None:
            try:
                os.close(old_fd)
            except OSError:
                pass

    # -- recording -----------------------------------------------------------------------

    def record(self, f: str, type: OpType | str, value: Any = None, *, error: str | None = None,
               process: str | None = None) -> Op:
        """Append one op and return it (with this file's local index and the current time).

        `value` must be JSON-serialisable (anything else is written as its ``str``). `process`
        overrides the process name for an op recorded on behalf of another process (the worker
        parent completing the execute of a pool child that died); leave it None otherwise.
        """
        optype = _to_optype(type)
        index, t, proc = self._append(f, optype, value, error, process)
        return Op(index=index, time=t, process=proc, type=optype, f=f, value=value, error=error)

    def append(self, f: str, type: OpType | str, value: Any = None, *, error: str | None = None,
               process: str | None = None) -> None:
        """`record` without building the returned `Op`: the hot path of the Celery hooks."""
        self._append(f, _to_optype(type), value, error, process)

    def _append(self, f: str, optype: OpType, value: Any, error: str | None,
                process: str | None) -> tuple[int, int, str]:
        # Encode the payload outside the lock; only index, time and the write are serialised.
        f_json = _F_JSON.get(f)
        if f_json is None:
            f_json = _F_JSON.setdefault(f, _encode(f) + ',"value":')
        tail = f_json + _encode(value)
        if error is not None:
            tail += ',"error":' + _encode(error)
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    f"HistoryRecorder for {self.process!r} is closed: record before close(), "
                    "or create a new recorder"
                )
            pid = os.getpid()
            if pid != self.pid:
                self._reopen_for_child(pid)
            index = self._next_index
            t = time.monotonic_ns()
            proc = self.process if process is None else process
            proc_json = self._process_json if process is None else _encode(process)
            # Same bytes as Op.to_json(): Jepsen's key order, compact separators.
            line = (f'{{"index":{index},"time":{t},"process":{proc_json},"type":"{optype.value}",'
                    f'"f":{tail}}}\n')
            self._write_all(line.encode("utf-8"))
            self._next_index = index + 1
            return index, t, proc

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        # Regular files take the whole buffer in one write; the loop only guards against a
        # short write (e.g. interrupted by a signal) so a line is never silently truncated.
        view = memoryview(data)
        for _ in range(64):
            try:
                n = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OSError(exc.errno, f"history directory {self.directory} is full: free space "
                                  "or point the run at another directory") from exc
                raise
            if n == len(view):
                return
            view = view[n:]
        raise OSError(f"could not append a history line to {self.path} after 64 short writes")

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the file. Idempotent; ``record`` afterwards raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)  # in a forked child this closes only the child's copy
            self._fd = None
        _LIVE.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def recorded(self) -> int:
        """How many ops this process has recorded into its current file."""
        return self._next_index

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HistoryRecorder(process={self.process!r}, path={str(self.path)!r})"


def _reset_locks_in_child() -> None:
    for rec in list(_LIVE):
        rec._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_locks_in_child)
