"""Record a Celery app's history from its signals, with no change to task code.

Responsibility: `install(app, directory, run_id)` makes every process using `app` (producers,
the worker's main process, its pool children) append its ops to its own file in `directory`.

What is recorded, by whom (``f``/type, process):

=====================================  ====================================================
Celery event                           op
=====================================  ====================================================
``before_task_publish``                publish/invoke (producer, or worker for retries and
                                       chain/chord children)
``after_task_publish`` (after the      publish/ok
broker confirmed, with confirms on)
publish raised after it was sent       publish/info (unknown: the broker may have it)
publish raised before anything was     publish/invoke + publish/fail (known not sent)
sent (e.g. the result backend is down)
``task_received``                      receive/ok (worker main; value.redelivered)
``task_prerun``                        execute/invoke (pool child)
``task_success``                       execute/ok (then a hold may keep the worker there:
                                       `harness.history.holds`)
``task_failure``                       execute/fail, value.state FAILURE
``task_retry``                         retry/ok and execute/fail with value.state RETRY
``task_postrun`` for Reject/Ignore     execute/fail state REJECTED / execute/ok state IGNORED
``task_internal_error``                execute/info state INTERNAL_ERROR
``task_revoked``                       revoke/ok (value.terminated, value.expired)
``task_rejected``, ``task_unknown``    reject/ok (unknown or invalid message)
``Request.reject`` (worker main)       reject/ok (value.requeue): Reject, worker lost, ...
``Request.acknowledge`` (worker main)  ack/invoke (value.after: what the ack concludes)
kombu ``Message.ack_log_error``        ack/ok when the ack went out on its channel, ack/fail when
                                       not (Celery logs "Couldn't ack" and goes on)
``Request.on_failure`` with            worker_lost/ok (value.exitcode, value.child_pid) and
``WorkerLostError`` (worker main)      execute/info under the dead child's process name
``Request.on_timeout`` (hard limit)    execute/info under the child's process name
``Backend.chord_error_from_stack``     chord_error/ok (fail when it raised), task_id the
                                       chord callback's, value.by the task that did it
=====================================  ====================================================

A ``celery.chord_unlock`` execution carries the ``chord_id`` of the chord it polls (its
callback's task id) and ``role: "unlock"``.

The workload unit key and the run id travel in message headers ``chaos_key`` and
``chaos_run_id``, set on publish when absent: the key from ``kwargs["key"]`` or, when
published from inside a task (retry, chain step, chord callback), from the running task; the
run id from the running task or the installation. Every op's value carries ``task_id``,
``name``, ``key``, ``run_id`` (the message's, so leftovers of an earlier run stand out).

Process names: ``<process_name>-<pid>`` (``producer-4100``, ``worker-4200``) and
``worker-4200.child-4210`` for prefork children (a replacement child has a new pid). Pools
prefork, threads and solo are supported.

Celery's hooks are process-global: signal receivers are connected once per process and find
their installation through the sender's app; the worker-side hooks wrap three methods of
``celery.worker.request.Request`` (on_failure, on_timeout, reject) because Celery sends no
signal when a lost worker's task is requeued; and ``acknowledge``, because Celery sends no
signal for an ack either, and swallows an ack that fails on a closed channel.

Example:
    >>> from celery import Celery
    >>> import tempfile
    >>> app = Celery("demo", broker="memory://")
    >>> inst = install(app, tempfile.mkdtemp(), "run-1", process_name="producer-1")
    >>> inst.recorder.process.startswith("producer-1-")
    True
    >>> inst.uninstall()
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.history import active, holds
from harness.history.ops import F, OpType
from harness.history.recorder import HistoryRecorder, child_process_name

__all__ = [
    "ENV_HISTORY_DIR",
    "ENV_PROCESS_NAME",
    "ENV_RUN_ID",
    "KEY_HEADER",
    "RUN_ID_HEADER",
    "Installation",
    "install",
    "install_from_env",
    "installation_for",
]

KEY_HEADER = "chaos_key"
#: Celery's poller of chords on result backends without native joins (SQL, rpc ...).
UNLOCK_TASK = "celery.chord_unlock"
RUN_ID_HEADER = "chaos_run_id"
ENV_HISTORY_DIR = "CHAOS_HISTORY_DIR"
ENV_RUN_ID = "CHAOS_RUN_ID"
ENV_PROCESS_NAME = "CHAOS_PROCESS_NAME"

_ERROR_MAX = 300
log = logging.getLogger("harness.history")


class Installation:
    """The history recording installed into one Celery app in this process.

    Created by `install`; holds the process's `HistoryRecorder` (``.recorder``) and the run id.
    Call ``uninstall()`` to stop recording (tests); worker processes simply exit.
    """

    def __init__(self, app: Any, directory: Path, run_id: str, process_name: str | None) -> None:
        self.app = app
        self.directory = directory
        self.run_id = run_id
        self._explicit_name = process_name
        self._lock = threading.Lock()
        self.is_worker = False
        self.errors = 0
        self.recorder = HistoryRecorder(directory, f"{process_name or 'producer'}-{os.getpid()}")

    def _become_worker(self) -> None:
        """The process turned out to be a worker: rename an unused 'producer-<pid>' recorder."""
        with self._lock:
            self.is_worker = True
            rec = self.recorder
            if self._explicit_name is None and rec.recorded == 0 and rec.pid == os.getpid():
                path = rec.path
                rec.close()
                try:
                    if path.stat().st_size == 0:
                        path.unlink()
                except FileNotFoundError:
                    pass
                self.recorder = HistoryRecorder(self.directory, f"worker-{os.getpid()}")
                active.set_active(self.recorder, task_context=_task_context, run_id=self.run_id)

    def record(self, f: str, type: OpType, value: dict[str, Any], *, error: str | None = None,
               process: str | None = None) -> None:
        """Append an op; never raises into Celery (a failure is logged and counted)."""
        try:
            self.recorder.append(f, type, value, error=error, process=process)
        except Exception as exc:  # noqa: BLE001 - recording must not break the system under test
            self.errors += 1
            if self.errors <= 3:
                log.warning("history: could not record %s/%s: %r", f, type.value, exc)

    def uninstall(self) -> None:
        """Stop recording for this app in this process and close the file."""
        _INSTALLED.pop(id(self.app), None)
        self.app.__dict__.pop("send_task", None)
        if active.active_recorder() is self.recorder:
            active.set_active(None)
        self.recorder.close()

    def __repr__(self) -> str:
        return f"Installation(run_id={self.run_id!r}, recorder={self.recorder!r})"


_INSTALLED: dict[int, Installation] = {}
_connect_lock = threading.Lock()
_connected = False


def installation_for(app: Any) -> Installation | None:
    """The installation for `app` in this process, if any."""
    return _INSTALLED.get(id(app)) if app is not None else None


def install(app: Any, directory: Path | str, run_id: str, *, process_name: str | None = None) -> Installation:
    """Record `app`'s publishes, deliveries, executions and worker losses into `directory`.

    Call it once per process before the app publishes or the worker starts (the worker option
    and `install_from_env` do it for you). Installing twice with the same directory and run id
    returns the existing installation; with different ones it raises ``RuntimeError``.

    Args:
        app: the Celery app.
        directory: the run's history directory (shared by all processes of the run).
        run_id: the run's id, stamped into every message as header ``chaos_run_id``.
        process_name: base of the process name (``producer-1``); the pid is appended.
            Default ``producer``, or ``worker`` once a worker starts in this process.

    Example: ``install(app, "/tmp/run-7/history", "run-7", process_name="producer-1")``.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty str naming the run, got {run_id!r}")
    d = Path(directory)
    existing = _INSTALLED.get(id(app))
    if existing is not None:
        if existing.directory == d and existing.run_id == run_id:
            return existing
        raise RuntimeError(
            f"history is already installed into app {app.main!r} with directory {str(existing.directory)!r} "
            f"and run id {existing.run_id!r}; call .uninstall() on it before installing "
            f"{str(d)!r} / {run_id!r}"
        )
    _connect_once()
    inst = Installation(app, d, run_id, process_name)
    _INSTALLED[id(app)] = inst
    _wrap_send_task(inst)
    active.set_active(inst.recorder, task_context=_task_context, run_id=run_id)
    return inst


def install_from_env(app: Any, *, process_name: str | None = None) -> Installation | None:
    """`install` from ``CHAOS_HISTORY_DIR`` / ``CHAOS_RUN_ID`` (/ ``CHAOS_PROCESS_NAME``), read now.

    Returns None (records nothing) when ``CHAOS_HISTORY_DIR`` is unset.
    """
    directory = os.environ.get(ENV_HISTORY_DIR)
    if not directory:
        return None
    run_id = os.environ.get(ENV_RUN_ID)
    if not run_id:
        raise ValueError(
            f"{ENV_HISTORY_DIR} is set ({directory!r}) but {ENV_RUN_ID} is not: export {ENV_RUN_ID}=<run id> "
            "so messages of this run can be told from leftovers of earlier runs"
        )
    return install(app, directory, run_id, process_name=process_name or os.environ.get(ENV_PROCESS_NAME) or None)


# ---------------------------------------------------------------------------------------------
# helpers


def _short(exc: BaseException | str | None) -> str | None:
    if exc is None:
        return None
    s = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return s[:_ERROR_MAX]


def _ctx_get(ctx: Any, name: str) -> Any:
    """Read a field from a Celery Context, a request dict or a Bunch."""
    if ctx is None:
        return None
    if isinstance(ctx, dict):
        return ctx.get(name)
    return getattr(ctx, name, None)


def _kwargs_key(kwargs: Any) -> str | None:
    if isinstance(kwargs, dict):
        k = kwargs.get("key")
        if k is not None:
            return str(k)
    return None


# task name -> position of its "key" parameter (None: it has none), looked up once per task.
_key_positions: dict[str, int | None] = {}


def _args_key(task: Any, args: Any, kwargs: Any) -> str | None:
    """The workload key passed as ``key=`` or positionally to a task whose signature has ``key``."""
    k = _kwargs_key(kwargs)
    if k is not None or task is None or not isinstance(args, (list, tuple)) or not args:
        return k
    name = getattr(task, "name", None)
    if name is None:
        return None
    if name not in _key_positions:
        pos: int | None = None
        try:
            params = list(inspect.signature(task.run).parameters.values())
            for i, p in enumerate(params):
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name == "key":
                    pos = i
                    break
        except (TypeError, ValueError):
            pass
        _key_positions[name] = pos
    pos = _key_positions[name]
    if pos is not None and pos < len(args) and args[pos] is not None:
        return str(args[pos])
    return None


def _chord_id(chord: Any) -> str | None:
    if isinstance(chord, dict):
        opts = chord.get("options") or {}
        tid = opts.get("task_id")
        return str(tid) if tid is not None else None
    return None


def _registered(inst: Installation, name: Any) -> Any:
    """The app's task object for `name` (None for a task only known by name, as with send_task)."""
    try:
        return inst.app.tasks.get(name)
    except Exception:  # noqa: BLE001
        return None


def _current_worker_task() -> Any:
    from celery._state import get_current_worker_task

    return get_current_worker_task()


def _task_context() -> dict[str, Any]:
    """The running task's identity, for effects recorded from task code."""
    task = _current_worker_task()
    if task is None:
        return {}
    req = task.request
    out: dict[str, Any] = {"task_id": req.id, "name": task.name, "attempt": req.retries or 0,
                           "hostname": req.hostname}
    key = _ctx_get(req, KEY_HEADER) or _args_key(task, req.args, req.kwargs)
    if key is not None:
        out["key"] = key
    run = _ctx_get(req, RUN_ID_HEADER)
    if run is not None:
        out["run_id"] = run
    return out


def _request_core(task_id: Any, name: Any, ctx: Any, task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "name": name,
        "key": _ctx_get(ctx, KEY_HEADER) or _args_key(task, args, kwargs),
        "run_id": _ctx_get(ctx, RUN_ID_HEADER),
    }


# ---------------------------------------------------------------------------------------------
# publish: signals + a wrapper around app.send_task that sees exceptions the signals cannot


class _Attempt:
    __slots__ = ("inst", "value", "state")

    def __init__(self, inst: Installation) -> None:
        self.inst = inst
        self.value: dict[str, Any] | None = None
        self.state = "pending"  # -> "invoked" (before_task_publish) -> "done" (after_task_publish)


_tls = threading.local()


def _attempts() -> list[_Attempt]:
    stack = getattr(_tls, "attempts", None)
    if stack is None:
        stack = _tls.attempts = []
    return stack


def _wrap_send_task(inst: Installation) -> None:
    app = inst.app
    original: Callable[..., Any] = type(app).send_task.__get__(app)

    def send_task(name: str, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any) -> Any:
        # A task id chosen here (as Celery would) lets a publish that fails early still be named.
        if not rest or len(rest) < 3:
            if options.get("task_id") is None:
                options["task_id"] = str(uuid.uuid4())
        attempt = _Attempt(inst)
        stack = _attempts()
        stack.append(attempt)
        try:
            return original(name, args, kwargs, *rest, **options)
        except BaseException as exc:
            _publish_raised(attempt, name, args, kwargs, options, exc)
            raise
        finally:
            stack.pop()

    send_task.__wrapped__ = original  # type: ignore[attr-defined]
    send_task.__doc__ = original.__doc__
    app.send_task = send_task


def _publish_raised(attempt: _Attempt, name: str, args: Any, kwargs: Any, options: dict[str, Any],
                    exc: BaseException) -> None:
    inst = attempt.inst
    if attempt.state == "invoked" and attempt.value is not None:
        # Bytes may have reached the broker (or been confirmed with the ack lost): unknown.
        inst.record(F.PUBLISH, OpType.INFO, attempt.value, error=_short(exc))
    elif attempt.state == "pending":
        headers = options.get("headers") or {}
        parent = _current_worker_task()
        preq = parent.request if parent is not None else None
        value = {
            "task_id": options.get("task_id"),
            "name": name,
            "key": (headers.get(KEY_HEADER) or _args_key(_registered(inst, name), args, kwargs)
                    or _ctx_get(preq, KEY_HEADER)),
            "run_id": headers.get(RUN_ID_HEADER) or _ctx_get(preq, RUN_ID_HEADER) or inst.run_id,
            "pid": os.getpid(),
        }
        inst.record(F.PUBLISH, OpType.INVOKE, value)
        inst.record(F.PUBLISH, OpType.FAIL, {**value, "not_sent": True}, error=_short(exc))


def _on_before_task_publish(sender: Any = None, body: Any = None, headers: dict[str, Any] | None = None,
                            **_: Any) -> None:
    stack = _attempts()
    if not stack or headers is None:
        return
    attempt = stack[-1]
    inst = attempt.inst
    try:
        args = body[0] if isinstance(body, tuple) and body else None
        kwargs = body[1] if isinstance(body, tuple) and len(body) > 1 else None
        parent = _current_worker_task()
        preq = parent.request if parent is not None else None
        key = (headers.get(KEY_HEADER) or _args_key(_registered(inst, headers.get("task") or sender), args, kwargs)
               or _ctx_get(preq, KEY_HEADER))
        run_id = headers.get(RUN_ID_HEADER) or _ctx_get(preq, RUN_ID_HEADER) or inst.run_id
        if key is not None:
            headers[KEY_HEADER] = str(key)
        headers[RUN_ID_HEADER] = run_id
        value: dict[str, Any] = {
            "task_id": headers.get("id"),
            "name": headers.get("task") or sender,
            "key": None if key is None else str(key),
            "run_id": run_id,
            "attempt": headers.get("retries") or 0,
            "parent_id": headers.get("parent_id"),
            "root_id": headers.get("root_id"),
            "group_id": headers.get("group"),
            "eta": headers.get("eta"),
            "pid": os.getpid(),
        }
        attempt.value = value
        attempt.state = "invoked"
        inst.record(F.PUBLISH, OpType.INVOKE, value)
    except Exception as exc:  # noqa: BLE001
        inst.errors += 1
        log.warning("history: before_task_publish: %r", exc)


def _on_after_task_publish(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    stack = _attempts()
    if not stack:
        return
    attempt = stack[-1]
    if attempt.state != "invoked" or attempt.value is None:
        return
    attempt.state = "done"
    attempt.inst.record(F.PUBLISH, OpType.OK, attempt.value)


# ---------------------------------------------------------------------------------------------
# worker main process: receive, revoke, reject


def _on_task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(getattr(request, "task", None), "app", None) or getattr(sender, "app", None))
    if inst is None or request is None:
        return
    rd = request.request_dict
    value = _request_core(request.id, request.name, rd, request.task, request.args, request.kwargs)
    value.update({
        "redelivered": bool((request.delivery_info or {}).get("redelivered", False)),
        "attempt": rd.get("retries") or 0,
        "hostname": request.hostname,
        "pid": os.getpid(),
    })
    inst.record(F.RECEIVE, OpType.OK, value)


def _on_task_revoked(sender: Any = None, request: Any = None, terminated: Any = None, signum: Any = None,
                     expired: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None:
        return
    value = _request_core(_ctx_get(request, "id"), getattr(sender, "name", None), request, sender,
                          _ctx_get(request, "args"), _ctx_get(request, "kwargs"))
    value.update({"terminated": bool(terminated), "signum": None if signum is None else str(signum),
                  "expired": bool(expired), "pid": os.getpid()})
    inst.record(F.REVOKE, OpType.OK, value)


def _message_value(message: Any) -> dict[str, Any]:
    headers = getattr(message, "headers", None) or {}
    kwargs = None
    try:
        payload = message.payload
        if isinstance(payload, (list, tuple)) and len(payload) > 1:
            kwargs = payload[1]
    except Exception:  # noqa: BLE001 - an undecodable message is the reason it was rejected
        pass
    return {
        "task_id": headers.get("id"),
        "name": headers.get("task"),
        "key": headers.get(KEY_HEADER) or _kwargs_key(kwargs),
        "run_id": headers.get(RUN_ID_HEADER),
        "redelivered": bool((getattr(message, "delivery_info", None) or {}).get("redelivered", False)),
    }


def _on_task_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None or message is None:
        return
    value = _message_value(message)
    value.update({"requeue": False, "reason": "invalid message" if exc is not None else "unknown message",
                  "pid": os.getpid()})
    inst.record(F.REJECT, OpType.OK, value, error=_short(exc))


def _on_task_unknown(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None or message is None:
        return
    value = _message_value(message)
    value.update({"requeue": False, "reason": "unknown task", "pid": os.getpid()})
    inst.record(F.REJECT, OpType.OK, value, error=_short(exc))


# ---------------------------------------------------------------------------------------------
# pool child (or the worker itself for threads/solo): execute


class _Open:
    __slots__ = ("value", "done")

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value
        self.done = False


# Executions in flight in this process, by (thread, task id): a completion signal is recorded
# only for an execute this process started, so failures Celery reports in the worker main
# process (lost child, hard time limit) are left to the Request hooks below.
_open: dict[tuple[int, str], _Open] = {}


def _open_for(task_id: Any) -> _Open | None:
    return _open.get((threading.get_ident(), str(task_id)))


def _on_task_prerun(sender: Any = None, task_id: Any = None, task: Any = None, args: Any = None,
                    kwargs: Any = None, **_: Any) -> None:
    task = task or sender
    inst = installation_for(getattr(task, "app", None))
    if inst is None:
        return
    req = task.request
    value = _request_core(task_id, task.name, req, task, args, kwargs)
    value.update({
        "attempt": req.retries or 0,
        "redelivered": bool((req.delivery_info or {}).get("redelivered", False)),
        "hostname": req.hostname,
        "pid": os.getpid(),
        "parent_id": req.parent_id,
        "root_id": req.root_id,
        "group_id": req.group,
        "chord_id": _chord_id(req.chord),
    })
    if value["chord_id"] is None and task.name == UNLOCK_TASK and isinstance(args, (list, tuple)) and len(args) > 1:
        # celery.chord_unlock(group_id, callback): the poller of a chord on a backend without
        # native joins; it serves the chord whose callback it will publish.
        value["chord_id"] = _chord_id(args[1])
        if value["chord_id"] is not None:
            value["role"] = "unlock"
    _open[(threading.get_ident(), str(task_id))] = _Open(value)
    inst.record(F.EXECUTE, OpType.INVOKE, value)


def _complete(inst: Installation, task_id: Any, type_: OpType, extra: dict[str, Any] | None = None,
              error: str | None = None) -> None:
    entry = _open_for(task_id)
    if entry is None or entry.done:
        return
    entry.done = True
    core = {k: entry.value[k] for k in ("task_id", "name", "key", "run_id", "attempt", "pid")}
    if extra:
        core.update(extra)
    inst.record(F.EXECUTE, type_, core, error=error)


def _on_task_success(sender: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None:
        return
    entry = _open_for(sender.request.id)
    recorded = entry is not None and not entry.done
    _complete(inst, sender.request.id, OpType.OK, {"state": "SUCCESS"})
    if recorded:
        # The result is stored and the message not acked yet: a fault triggered on this
        # success may ask the worker to wait here until it lands (harness.history.holds).
        holds.hold_here(inst.directory, "success", getattr(sender, "name", None), str(sender.request.id))


def _on_task_failure(sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None:
        return
    _complete(inst, task_id, OpType.FAIL, {"state": "FAILURE", "exc_type": type(exception).__name__},
              error=_short(exception))


def _on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None:
        return
    task_id = _ctx_get(request, "id")
    value = _request_core(task_id, getattr(sender, "name", None), request, sender,
                          _ctx_get(request, "args"), _ctx_get(request, "kwargs"))
    when = getattr(reason, "when", None)
    exc = getattr(reason, "exc", None)
    value.update({
        "attempt": _ctx_get(request, "retries") or 0,
        "countdown": when if isinstance(when, (int, float)) else None,
        "eta": None if when is None or isinstance(when, (int, float)) else str(when),
        "reason": _short(exc) if exc is not None else _short(str(reason) if reason is not None else None),
        "pid": os.getpid(),
    })
    inst.record(F.RETRY, OpType.OK, value)
    _complete(inst, task_id, OpType.FAIL, {"state": "RETRY"}, error=value["reason"])


def _on_task_internal_error(sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is None:
        return
    entry = _open_for(task_id)
    if entry is not None:
        _complete(inst, task_id, OpType.INFO, {"state": "INTERNAL_ERROR"}, error=_short(exception))
    else:
        inst.record(F.EXECUTE, OpType.INFO, {"task_id": task_id, "name": getattr(sender, "name", None),
                                             "state": "INTERNAL_ERROR", "pid": os.getpid()},
                    error=_short(exception))


def _on_task_postrun(sender: Any = None, task_id: Any = None, retval: Any = None, state: Any = None,
                     **_: Any) -> None:
    key = (threading.get_ident(), str(task_id))
    entry = _open.get(key)
    if entry is None:
        return
    try:
        inst = installation_for(getattr(sender, "app", None))
        if inst is not None and not entry.done:
            if state == "REJECTED":
                requeue = bool(getattr(getattr(retval, "exception", None), "requeue", False))
                _complete(inst, task_id, OpType.FAIL, {"state": "REJECTED", "requeue": requeue})
            elif state == "IGNORED":
                _complete(inst, task_id, OpType.OK, {"state": "IGNORED"})
            elif state == "SUCCESS":
                _complete(inst, task_id, OpType.OK, {"state": "SUCCESS"})
            elif state in ("FAILURE", "RETRY"):
                _complete(inst, task_id, OpType.FAIL, {"state": state})
            else:
                _complete(inst, task_id, OpType.INFO, {"state": str(state)})
    finally:
        _open.pop(key, None)


# ---------------------------------------------------------------------------------------------
# worker main process: Request hooks (worker lost, hard time limit, every reject)

_EXIT_SIGNAL = re.compile(r"signal (\d+)")
_EXIT_CODE = re.compile(r"exitcode (-?\d+)")


def _exitcode(message: str) -> int | None:
    if m := _EXIT_SIGNAL.search(message):
        return -int(m.group(1))
    if m := _EXIT_CODE.search(message):
        return int(m.group(1))
    return None


def _child_process(inst: Installation, request: Any) -> str | None:
    pid = getattr(request, "worker_pid", None)
    if pid and pid != os.getpid():
        return child_process_name(inst.recorder.process, int(pid))
    return None


def _request_value(request: Any) -> dict[str, Any]:
    rd = request.request_dict
    value = _request_core(request.id, request.name, rd, request.task, request.args, request.kwargs)
    value.update({"attempt": rd.get("retries") or 0, "hostname": request.hostname, "pid": os.getpid()})
    return value


def _before_request_failure(request: Any, exc_info: Any) -> None:
    from billiard.einfo import ExceptionWithTraceback
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import Terminated

    inst = installation_for(getattr(getattr(request, "task", None), "app", None))
    if inst is None:
        return
    exc = getattr(exc_info, "exception", None)
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    lost = isinstance(exc, WorkerLostError)
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        # Celery treats a child's exit as a lost worker unless it killed the child itself.
        lost = not (getattr(request, "_already_cancelled", False) or getattr(request, "_already_revoked", False))
    if not lost or isinstance(exc, Terminated):
        return
    task = request.task
    value = _request_value(request)
    child = _child_process(inst, request)
    value.update({
        "exitcode": _exitcode(str(exc)) if isinstance(exc, WorkerLostError) else None,
        "child_pid": getattr(request, "worker_pid", None),
        "child_process": child,
        "acks_late": bool(task.acks_late),
        "reject_on_worker_lost": bool(getattr(task, "reject_on_worker_lost", False)),
    })
    inst.record(F.WORKER_LOST, OpType.OK, value, error=_short(exc))
    inst.record(F.EXECUTE, OpType.INFO,
                {k: value[k] for k in ("task_id", "name", "key", "run_id", "attempt")}
                | {"state": "WORKER_LOST", "pid": value["child_pid"]},
                error=_short(exc), process=child)


def _before_request_timeout(request: Any, soft: bool, timeout: Any) -> None:
    if soft:
        return
    inst = installation_for(getattr(getattr(request, "task", None), "app", None))
    if inst is None:
        return
    value = _request_value(request)
    inst.record(F.EXECUTE, OpType.INFO,
                {k: value[k] for k in ("task_id", "name", "key", "run_id", "attempt")}
                | {"state": "TIME_LIMIT", "pid": getattr(request, "worker_pid", None)},
                error=f"hard time limit ({timeout}s) exceeded", process=_child_process(inst, request))


def _mark_failure(request: Any, exc_info: Any) -> None:
    from billiard.einfo import ExceptionWithTraceback
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import Ignore, TimeLimitExceeded

    exc = getattr(exc_info, "exception", None)
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    request._chaos_ack_after = ("time_limit" if isinstance(exc, TimeLimitExceeded) else
                                "worker_lost" if isinstance(exc, WorkerLostError) else
                                "ignore" if isinstance(exc, Ignore) else "failure")


def _before_request_reject(request: Any, requeue: bool) -> None:
    if request.acknowledged:
        return
    inst = installation_for(getattr(getattr(request, "task", None), "app", None))
    if inst is None:
        return
    value = _request_value(request)
    value["requeue"] = bool(requeue)
    inst.record(F.REJECT, OpType.OK, value)


def _ack_context(request: Any) -> str:
    # What Celery was concluding when it acked: set by the hooks below, else inferred.
    after = getattr(request, "_chaos_ack_after", None)
    if after is not None:
        return str(after)
    return "accepted" if not getattr(request.task, "acks_late", False) else "success"


def _before_request_ack(request: Any) -> None:
    inst = installation_for(getattr(getattr(request, "task", None), "app", None))
    message = getattr(request, "message", None)
    if inst is None or message is None:
        return
    task = request.task
    value = _request_value(request)
    value.update({
        "after": _ack_context(request),
        "acks_late": bool(getattr(task, "acks_late", False)),
        "acks_on_failure": getattr(task, "acks_on_failure", None),
        "acks_on_timeout": getattr(task, "acks_on_timeout", None),
        "redelivered": bool((getattr(request, "delivery_info", None) or {}).get("redelivered", False)),
    })
    inst.record(F.ACK, OpType.INVOKE, value)
    # The prefork worker acks later, on its event loop (Consumer.call_soon_ack): the completion
    # is recorded where the ack really happens, kombu's Message.ack_log_error.
    message.__dict__["_chaos_ack"] = (inst, value)


def _after_message_ack(message: Any, error: BaseException | None) -> None:
    pending = message.__dict__.pop("_chaos_ack", None)
    if pending is None:
        return
    inst, value = pending
    # Celery's ack_log_error swallows a closed channel ("Couldn't ack"): kombu's Message says
    # whether the ack went out.
    if error is None and bool(getattr(message, "acknowledged", False)):
        inst.record(F.ACK, OpType.OK, value)
    else:
        inst.record(F.ACK, OpType.FAIL, value,
                    error=_short(error) if error is not None else "the ack did not go out (channel closed)")


def _safely(hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception as exc:  # noqa: BLE001 - never break Celery's own failure handling
        log.warning("history: %s failed: %r", hook.__name__, exc)


def _patch_request_class() -> None:
    from celery.worker.request import Request

    if Request.__dict__.get("_chaos_history_patched"):
        return
    on_failure, on_timeout, reject = Request.on_failure, Request.on_timeout, Request.reject
    acknowledge, on_retry = Request.acknowledge, Request.on_retry

    def patched_on_failure(self: Any, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        _safely(_before_request_failure, self, exc_info)
        if getattr(self, "_chaos_ack_after", None) is None:
            _safely(_mark_failure, self, exc_info)
        return on_failure(self, exc_info, *args, **kwargs)

    def patched_on_timeout(self: Any, soft: bool, timeout: Any) -> Any:
        _safely(_before_request_timeout, self, soft, timeout)
        if not soft:
            self._chaos_ack_after = "time_limit"
        return on_timeout(self, soft, timeout)

    def patched_on_retry(self: Any, exc_info: Any) -> Any:
        self._chaos_ack_after = "retry"
        return on_retry(self, exc_info)

    def patched_acknowledge(self: Any) -> Any:
        if not self.acknowledged:
            _safely(_before_request_ack, self)
        return acknowledge(self)

    def patched_reject(self: Any, requeue: bool = False) -> Any:
        _safely(_before_request_reject, self, requeue)
        return reject(self, requeue=requeue)

    Request.on_failure = patched_on_failure
    Request.on_timeout = patched_on_timeout
    Request.reject = patched_reject
    Request.acknowledge = patched_acknowledge
    Request.on_retry = patched_on_retry
    Request._chaos_history_patched = True
    _patch_message_class()


def _patch_message_class() -> None:
    from kombu.message import Message

    if Message.__dict__.get("_chaos_history_patched"):
        return
    ack_log_error = Message.ack_log_error

    def patched_ack_log_error(self: Any, logger: Any, errors: Any, multiple: bool = False) -> Any:
        try:
            result = ack_log_error(self, logger, errors, multiple=multiple)
        except BaseException as exc:
            _safely(_after_message_ack, self, exc)
            raise
        _safely(_after_message_ack, self, None)
        return result

    Message.ack_log_error = patched_ack_log_error  # type: ignore[method-assign]
    Message._chaos_history_patched = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# any process running a chord's end: the chord's error recorded instead of its callback


def _after_chord_error(backend: Any, callback: Any, exc: BaseException | None, error: BaseException | None) -> None:
    inst = installation_for(getattr(backend, "app", None))
    if inst is None or not isinstance(callback, dict):
        return
    opts = callback.get("options") or {}
    tid = opts.get("task_id")
    if tid is None:
        return  # nothing names the callback: nothing to attach the error to
    headers = opts.get("headers") or {}
    parent = _current_worker_task()
    preq = parent.request if parent is not None else None
    cause = exc if exc is not None else sys.exc_info()[1]
    value = {
        "task_id": str(tid),
        "name": callback.get("task"),
        "key": headers.get(KEY_HEADER) or _kwargs_key(callback.get("kwargs")) or _ctx_get(preq, KEY_HEADER),
        "run_id": headers.get(RUN_ID_HEADER) or _ctx_get(preq, RUN_ID_HEADER) or inst.run_id,
        "chord_id": str(tid),
        "role": "callback",
        "by": getattr(parent, "name", None),
        "by_task_id": _ctx_get(preq, "id"),
        "reason": _short(cause),
        "pid": os.getpid(),
    }
    if error is None:
        inst.record(F.CHORD_ERROR, OpType.OK, value)
    else:
        inst.record(F.CHORD_ERROR, OpType.FAIL, value, error=_short(error))


def _patch_backend_class() -> None:
    from celery.backends.base import Backend

    if Backend.__dict__.get("_chaos_history_patched"):
        return
    chord_error_from_stack = Backend.chord_error_from_stack

    def patched_chord_error_from_stack(self: Any, callback: Any, exc: Any = None) -> Any:
        try:
            result = chord_error_from_stack(self, callback, exc=exc)
        except BaseException as err:
            _safely(_after_chord_error, self, callback, exc, err)
            raise
        _safely(_after_chord_error, self, callback, exc, None)
        return result

    Backend.chord_error_from_stack = patched_chord_error_from_stack  # type: ignore[method-assign]
    Backend._chaos_history_patched = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# process-wide wiring


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    inst = installation_for(getattr(sender, "app", None))
    if inst is not None:
        inst._become_worker()


def _connect_once() -> None:
    global _connected
    with _connect_lock:
        if _connected:
            return
        from celery import signals

        pairs: list[tuple[Any, Callable[..., None]]] = [
            (signals.before_task_publish, _on_before_task_publish),
            (signals.after_task_publish, _on_after_task_publish),
            (signals.task_received, _on_task_received),
            (signals.task_prerun, _on_task_prerun),
            (signals.task_success, _on_task_success),
            (signals.task_failure, _on_task_failure),
            (signals.task_retry, _on_task_retry),
            (signals.task_postrun, _on_task_postrun),
            (signals.task_internal_error, _on_task_internal_error),
            (signals.task_revoked, _on_task_revoked),
            (signals.task_rejected, _on_task_rejected),
            (signals.task_unknown, _on_task_unknown),
            (signals.worker_init, _on_worker_init),
        ]
        for signal, receiver in pairs:
            signal.connect(receiver, weak=False, dispatch_uid=f"harness.history.{receiver.__name__}")
        _patch_request_class()
        _patch_backend_class()
        _connected = True
