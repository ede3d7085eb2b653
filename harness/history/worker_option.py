"""The worker option: ``celery -A app worker --chaos-history DIR --chaos-run-id ID``.

Responsibility: let a worker record its history without any change to task code, chosen
when the worker starts: by the two options above, or by the environment variables
``CHAOS_HISTORY_DIR`` / ``CHAOS_RUN_ID`` (read when the worker starts, never at import).

The app opts in once, next to its definition::

    app = Celery("sample_system")
    install_worker_option(app)

Without the options or variables the worker records nothing and behaves as before.
"""

from __future__ import annotations

import os
from typing import Any

from harness.history.celery_signals import ENV_HISTORY_DIR, ENV_PROCESS_NAME, ENV_RUN_ID, install

__all__ = ["install_worker_option"]


def install_worker_option(app: Any) -> None:
    """Add ``--chaos-history DIR`` / ``--chaos-run-id ID`` to `app`'s worker and record when given.

    Idempotent. The options fall back to ``CHAOS_HISTORY_DIR`` / ``CHAOS_RUN_ID``.

    Example:
        >>> from celery import Celery
        >>> app = Celery("demo", broker="memory://")
        >>> install_worker_option(app)
        >>> sorted(o.name for o in app.user_options["worker"] if o.name.startswith("chaos"))
        ['chaos_history', 'chaos_run_id']
    """
    import click
    from celery import bootsteps

    if any(getattr(s, "_chaos_history_step", False) for s in app.steps["worker"]):
        return

    app.user_options["worker"].add(click.Option(
        ["--chaos-history"], default=None, metavar="DIR",
        help=f"Record this worker's history (JSON lines) into DIR (default: ${ENV_HISTORY_DIR}).",
    ))
    app.user_options["worker"].add(click.Option(
        ["--chaos-run-id"], default=None, metavar="ID",
        help=f"Run id stamped on and expected in messages (default: ${ENV_RUN_ID}).",
    ))

    class ChaosHistory(bootsteps.Step):
        """Installs history recording into the worker's main process before the pool forks."""

        _chaos_history_step = True
        name = "harness.history.ChaosHistory"

        def __init__(self, worker: Any, chaos_history: str | None = None, chaos_run_id: str | None = None,
                     **kwargs: Any) -> None:
            directory = chaos_history or os.environ.get(ENV_HISTORY_DIR)
            if not directory:
                return
            run_id = chaos_run_id or os.environ.get(ENV_RUN_ID)
            if not run_id:
                raise ValueError(
                    f"--chaos-history {directory!r} needs a run id: pass --chaos-run-id ID or export {ENV_RUN_ID}"
                )
            inst = install(worker.app, directory, run_id,
                           process_name=os.environ.get(ENV_PROCESS_NAME) or "worker")
            inst._become_worker()

    app.steps["worker"].add(ChaosHistory)
