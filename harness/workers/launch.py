"""``python -m harness.workers.launch -A APP worker ...``: the ``celery`` command, under the harness.

Responsibility: start a real ``celery worker`` for any app given by import path, with what the
harness decided for this worker applied before the worker reads its configuration:

- the broker and result backend URLs (``CHAOS_BROKER_URL`` / ``CHAOS_BACKEND_URL``: the
  worker-role proxies of the stack), so an app needs no code to point at the stack;
- extra Celery settings (``CHAOS_WORKER_SETTINGS``, a JSON object, e.g.
  ``{"task_acks_late": true}``);
- history recording (``CHAOS_HISTORY_DIR`` / ``CHAOS_RUN_ID``), through
  `harness.history.record_worker`, so task code needs no change either.

Everything is read when the worker starts (this module's `main`), never at import.

Why settings are also pushed into already-bound tasks: Celery copies ``task_acks_late`` and
friends into each task class when the app finalizes. An app module that finalizes at import
(for example by looking up ``app.tasks``) would otherwise keep its own values; a task whose
attribute still equals the app's old setting takes the new one, an explicit per-task value
(different from the old setting) is kept.

Example::

    CHAOS_BROKER_URL=amqp://u:p@127.0.0.1:40001// CHAOS_WORKER_SETTINGS='{"task_acks_late": true}' \\
        python -m harness.workers.launch -A tests.engine.engine_app:app worker -P prefork -c 2
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["ENV_BACKEND_URL", "ENV_BROKER_URL", "ENV_SETTINGS", "apply_settings", "main"]

ENV_BROKER_URL = "CHAOS_BROKER_URL"
ENV_BACKEND_URL = "CHAOS_BACKEND_URL"
ENV_SETTINGS = "CHAOS_WORKER_SETTINGS"


def apply_settings(app: Any, settings: Mapping[str, Any]) -> None:
    """Apply Celery `settings` to `app`, including tasks bound before (see the module docstring).

    Example:
        >>> from celery import Celery
        >>> app = Celery("demo", broker="memory://")
        >>> @app.task(name="demo.t")
        ... def t(): ...
        >>> _ = app.tasks  # finalize: t.acks_late is copied from the (default) setting now
        >>> apply_settings(app, {"task_acks_late": True})
        >>> app.tasks["demo.t"].acks_late
        True
    """
    if not settings:
        return
    before = {k: app.conf.get(k) for k in settings}
    app.conf.update(dict(settings))
    if not app.finalized:
        return
    for task in list(app.tasks.values()):
        for attr, conf_name in getattr(task, "from_config", ()):
            if conf_name in settings and getattr(task, attr, None) == before.get(conf_name):
                setattr(type(task), attr, settings[conf_name])
    # Derived ack settings are computed at bind from acks_on_failure_or_timeout.
    if "task_acks_on_failure_or_timeout" in settings:
        for task in list(app.tasks.values()):
            for attr in ("acks_on_failure", "acks_on_timeout"):
                if getattr(task, attr, None) == before.get("task_acks_on_failure_or_timeout"):
                    setattr(type(task), attr, settings["task_acks_on_failure_or_timeout"])


def _app_path(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg in ("-A", "--app") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--app="):
            return arg.split("=", 1)[1]
    raise SystemExit("harness.workers.launch: pass the app with -A package.module:app")


def _load_settings() -> dict[str, Any]:
    raw = os.environ.get(ENV_SETTINGS)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"{ENV_SETTINGS} is not JSON ({exc}): pass an object such as "
                         '{"task_acks_late": true}') from None
    if not isinstance(doc, dict):
        raise SystemExit(f"{ENV_SETTINGS} must be a JSON object of Celery settings, got {type(doc).__name__}")
    return doc


#: What a worker prints, and exits with, when it cannot import the app it was given.
IMPORT_FAILED = "chaos-worker: cannot import the app"
IMPORT_FAILED_EXIT = 3


def main(argv: list[str] | None = None) -> int:
    """Prepare the app named by ``-A`` and run Celery's command line with history recording."""
    from celery.app.utils import find_app

    from harness.history import record_worker

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app = find_app(_app_path(args))
    except ImportError as exc:
        # One marked line the harness turns into a configuration error (exit 2), not a traceback.
        print(f"{IMPORT_FAILED} {_app_path(args)}: {type(exc).__name__}: {exc} "
              f"(sys.path: {os.pathsep.join(sys.path[:4])}...)", file=sys.stderr, flush=True)
        return IMPORT_FAILED_EXIT
    settings = _load_settings()
    urls: dict[str, Any] = {}
    if os.environ.get(ENV_BROKER_URL):
        urls["broker_url"] = os.environ[ENV_BROKER_URL]
    if os.environ.get(ENV_BACKEND_URL):
        urls["result_backend"] = os.environ[ENV_BACKEND_URL]
    # Explicit settings win over the stack URLs (a scenario may point a worker elsewhere).
    apply_settings(app, {**urls, **settings})
    return record_worker.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
