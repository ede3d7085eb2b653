"""``python -m harness.history.record_worker -A APP worker ...``: the ``celery`` command, recording.

Responsibility: run Celery's own command line unchanged, with history recording installed into
whatever app it loads, for apps that never call `install_worker_option` (no change to the
app's or the tasks' code). The history directory and run id come from ``CHAOS_HISTORY_DIR`` /
``CHAOS_RUN_ID`` (and optionally ``CHAOS_PROCESS_NAME``), read when the worker starts; without
``CHAOS_HISTORY_DIR`` it is exactly ``celery``.

Example::

    CHAOS_HISTORY_DIR=runs/r7/history CHAOS_RUN_ID=r7 \\
        python -m harness.history.record_worker -A sample_system worker -P prefork -c 2
"""

from __future__ import annotations

from typing import Any

from harness.history.celery_signals import install_from_env

__all__ = ["main"]


def _on_celeryd_init(sender: Any = None, instance: Any = None, **_: Any) -> None:
    # Sent in the worker's main process before the pool forks and before worker_init.
    app = getattr(instance, "app", None)
    if app is None:
        return
    inst = install_from_env(app, process_name="worker")
    if inst is not None:
        inst._become_worker()


def main(argv: list[str] | None = None) -> int:
    """Run the ``celery`` command line (`argv` without the program name) with recording hooked in."""
    from celery import signals
    from celery.bin.celery import main as celery_main

    signals.celeryd_init.connect(_on_celeryd_init, weak=False, dispatch_uid="harness.history.record_worker")
    if argv is not None:
        import sys

        sys.argv = ["celery", *argv]
    return int(celery_main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
