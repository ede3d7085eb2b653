"""The out-of-band history of a chaos run: Jepsen-style ops in append-only JSON lines.

Public API (everything else is an implementation detail):

- vocabulary: `Op`, `OpType`, `F`
- the merged value: `History`, `SkippedLine`; I/O: `read_history`, `write_history`, `merge_ops`,
  `parse_op_line` (one line, for readers that follow a run as it is written)
- recording: `HistoryRecorder` (nemesis / harness / producers record directly)
- effects API for the system under test: `record_effect`, `record_dlq`, `record`,
  `record_stored_effects`, `active_recorder`, `use_recorder`
- Celery integration (imported lazily, so checkers never import Celery): `install`,
  `install_from_env`, `install_worker_option`, `Installation`

Example:
    >>> import tempfile
    >>> with HistoryRecorder(tempfile.mkdtemp(), "nemesis") as rec:
    ...     rec.record(F.FAULT_START, OpType.INVOKE, {"fault": "partition_broker"}).f
    'fault_start'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.history.active import active_recorder, use_recorder
from harness.history.effects import record, record_dlq, record_effect, record_stored_effects
from harness.history.history import History, SkippedLine
from harness.history.merge import merge_ops, parse_op_line, read_history, write_history
from harness.history.ops import F, Op, OpType
from harness.history.recorder import HistoryRecorder

if TYPE_CHECKING:
    from harness.history.celery_signals import Installation, install, install_from_env
    from harness.history.worker_option import install_worker_option

__all__ = [
    "F",
    "History",
    "HistoryRecorder",
    "Installation",
    "Op",
    "OpType",
    "SkippedLine",
    "active_recorder",
    "install",
    "install_from_env",
    "install_worker_option",
    "merge_ops",
    "parse_op_line",
    "read_history",
    "record",
    "record_dlq",
    "record_effect",
    "record_stored_effects",
    "use_recorder",
    "write_history",
]

_LAZY = {
    "install": "harness.history.celery_signals",
    "install_from_env": "harness.history.celery_signals",
    "Installation": "harness.history.celery_signals",
    "install_worker_option": "harness.history.worker_option",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.history' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
