"""Holds: a worker waits at a recorded point of a task until the nemesis has applied its fault.

Responsibility: make a fault land inside a window too short to hit by watching the history.
A task's success is recorded (``execute`` ok) after Celery stored its result and before the
worker acks its message; the nemesis sees that op tens of milliseconds later, by which time the
ack is long gone. A trigger with a hold (``on_success(..., hold_s=5)``) asks the worker to wait
right there, after recording the op, until the nemesis says the fault was applied (a kill then
lands with the result stored and the message unacked), at most ``hold_s`` seconds.

The protocol is files in ``<history_dir>/holds/`` (ignored by the history readers, which read
only per-process ``*.jsonl`` files), so it works across processes and needs no connection:

- the nemesis writes ``<fault_id>.hold`` (JSON: event, task name, seconds) when it starts
  waiting for the trigger, and ``<fault_id>.released`` once the fault is applied or will
  never be (heal, stop, timeout);
- an op that matches the trigger but is not its ``nth`` is let go at once with
  ``<fault_id>.<task_id>.released``;
- the worker, after recording a matching op, waits for either release file.

Without a ``holds`` directory the worker's check is one ``stat``.

Example:
    >>> import tempfile, time
    >>> tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> request_hold(d, "f1", "success", "probes.work", 5.0)
    >>> release(d, "f1")
    >>> t = time.monotonic(); hold_here(d, "success", "probes.work", "t-1"); time.monotonic() - t < 1
    True
    >>> hold_here(d, "success", "other.task", "t-2")   # no hold for that name: returns at once
    >>> tmp.cleanup()
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["HOLDS_DIR", "hold_here", "release", "request_hold"]

HOLDS_DIR = "holds"
#: How often a held worker looks for its release: small next to the nemesis's own poll.
_POLL_S = 0.01
_MAX_HOLD_S = 120.0


def _dir(history_dir: Path | str) -> Path:
    return Path(history_dir) / HOLDS_DIR


def _write(path: Path, text: str) -> None:
    # Write then rename: a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def request_hold(history_dir: Path | str, fault_id: str, event: str, task_name: str | None, hold_s: float) -> None:
    """Ask workers to hold after recording an op of `event` (for `task_name`, or any) for fault `fault_id`."""
    d = _dir(history_dir)
    d.mkdir(parents=True, exist_ok=True)
    _write(d / f"{fault_id}.hold", json.dumps({"fault_id": fault_id, "event": event, "task_name": task_name,
                                               "hold_s": float(hold_s)}))


def release(history_dir: Path | str, fault_id: str, task_id: str | None = None) -> None:
    """Let go every worker held for `fault_id` (and any later one), or only the one holding `task_id`."""
    d = _dir(history_dir)
    d.mkdir(parents=True, exist_ok=True)
    name = f"{fault_id}.released" if task_id is None else f"{fault_id}.{task_id}.released"
    (d / name).touch()


def hold_here(history_dir: Path | str, event: str, task_name: str | None, task_id: str) -> None:
    """Called by a worker right after recording an op of `event`: wait while a hold asks for it."""
    d = _dir(history_dir)
    if not d.is_dir():
        return
    for spec_path in sorted(d.glob("*.hold")):
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            continue
        if spec.get("event") != event or spec.get("task_name") not in (None, task_name):
            continue
        fid = str(spec.get("fault_id"))
        every, mine = d / f"{fid}.released", d / f"{fid}.{task_id}.released"
        deadline = time.monotonic() + min(float(spec.get("hold_s") or 0.0), _MAX_HOLD_S)
        while time.monotonic() < deadline and not (every.exists() or mine.exists()):
            time.sleep(_POLL_S)
