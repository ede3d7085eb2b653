"""The recorder this process's effects go to: the one piece of ambient state in history/.

Responsibility: let code that has no handle on the run (a task body calling
``record_effect``) find the recorder the harness installed into its process. `install` (Celery)
sets it; tests and harness code may set it explicitly with `use_recorder`.

Why ambient: Celery's own signals are process-global and task code must not change to carry a
recorder around; everything else in the harness passes its handles explicitly.

Example:
    >>> import tempfile
    >>> from harness.history.recorder import HistoryRecorder
    >>> rec = HistoryRecorder(tempfile.mkdtemp(), "producer-1")
    >>> with use_recorder(rec):
    ...     active_recorder() is rec
    True
    >>> active_recorder() is None
    True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.history.recorder import HistoryRecorder

# Returns the context of the task running in the calling thread (task_id, key, run_id, ...)
# or an empty dict outside a task; installed by the Celery integration.
TaskContext = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Active:
    recorder: HistoryRecorder
    task_context: TaskContext | None
    run_id: str | None


_lock = threading.Lock()
_active: _Active | None = None


def set_active(recorder: HistoryRecorder | None, *, task_context: TaskContext | None = None,
               run_id: str | None = None) -> None:
    """Make `recorder` the process's recorder (None removes it)."""
    global _active
    with _lock:
        _active = None if recorder is None else _Active(recorder, task_context, run_id)


def active_recorder() -> HistoryRecorder | None:
    """The process's recorder, or None when no history is being recorded here."""
    a = _active
    return None if a is None or a.recorder.closed else a.recorder


def active_context() -> dict[str, Any]:
    """Context of the task running in this thread plus the run id (empty when unknown)."""
    a = _active
    if a is None:
        return {}
    ctx: dict[str, Any] = {}
    if a.run_id is not None:
        ctx["run_id"] = a.run_id
    if a.task_context is not None:
        try:
            ctx.update(a.task_context())
        except Exception:  # noqa: BLE001 - recording must never break the task it observes
            pass
    return ctx


@contextlib.contextmanager
def use_recorder(recorder: HistoryRecorder, *, run_id: str | None = None) -> Iterator[HistoryRecorder]:
    """Make `recorder` the process's recorder inside the block, restoring the previous one after."""
    global _active
    with _lock:
        previous = _active
        _active = _Active(recorder, None, run_id)
    try:
        yield recorder
    finally:
        with _lock:
            _active = previous
