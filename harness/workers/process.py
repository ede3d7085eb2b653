"""Real `celery worker` processes for any Celery app given by import path.

Responsibility: start a worker in its own process group with the stack's worker-role URLs (and,
when asked, history recording and extra Celery settings), wait until it answers a ping, look
into it (pool children, active / reserved / scheduled tasks), and stop, kill or restart it
without leaving a process behind.

Operations, in Celery's words:

- `kill` SIGKILLs the whole worker (main process and pool children, the process group);
- `kill_child(pid)` SIGKILLs one prefork pool child; `kill_child_running(task_name=...)` finds
  the child executing a task (``inspect active``) and SIGKILLs exactly that one;
- `warm_shutdown` (SIGTERM to the main process: finish running tasks, then exit),
  `cold_shutdown` (SIGQUIT: exit now, running tasks are cut), `restart`.

Example:
    >>> spec = WorkerSpec(app="tests.engine.engine_app:app", queues=("engine",), concurrency=2)
    >>> with WorkerProcess(spec, broker_url=..., backend_url=...) as w:     # doctest: +SKIP
    ...     killed = w.kill_child_running(task_name="engine.slow", timeout=10)
    ...     w.warm_shutdown()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, log_tail
from harness.workers.launch import ENV_BROKER_WAIT, ENV_READY_FILE

Pool = Literal["prefork", "threads", "solo"]
POOLS: tuple[str, ...] = ("prefork", "threads", "solo")

__all__ = ["POOLS", "KilledChild", "Pool", "WorkerProcess", "WorkerSpec", "wait_until"]

_READY_POLL_S = 0.02  # how often the ready file is looked for
_FALLBACK_PING_S = 1.0  # a ping this often while the file is missing


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What to run: ``celery -A APP worker -P POOL -c N -Q QUEUES -n HOSTNAME`` plus settings.

    app:        import path of the Celery app (``package.module:app`` or ``package``)
    pool:       prefork (default), threads or solo
    concurrency: pool size
    queues:     queues to consume (default: the app's default queue)
    hostname:   node name (``w1@127.0.0.1``); default ``chaos-<random>@127.0.0.1``
    settings:   Celery settings applied over the app's own (JSON values), e.g.
                ``{"task_acks_late": True, "worker_prefetch_multiplier": 1}``
    env:        extra environment variables for the worker process
    pythonpath: directories put in front of PYTHONPATH (where the app's package lives)
    extra_args: more ``celery worker`` arguments

    Example:
        >>> WorkerSpec(app="sample_system:app", pool="threads", concurrency=4).to_dict()["pool"]
        'threads'
        >>> WorkerSpec(app="x:app", pool="gevent")
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: pool must be one of prefork, threads, solo, not 'gevent'
    """

    app: str
    pool: Pool = "prefork"
    concurrency: int = 2
    queues: tuple[str, ...] = ()
    hostname: str = ""
    loglevel: str = "INFO"
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    pythonpath: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        if not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, not {self.concurrency!r}")
        if not isinstance(self.app, str) or not self.app or (
                ":" not in self.app and "." not in self.app and not self.app.isidentifier()):
            raise ConfigError(f"app must be an import path like 'package.module:app', not {self.app!r}")
        if isinstance(self.queues, str):
            raise ConfigError(f"queues must be a tuple of names, not one string: use queues=({self.queues!r},)")
        object.__setattr__(self, "queues", tuple(self.queues))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "pythonpath", tuple(str(p) for p in self.pythonpath))
        if self.hostname and "@" not in self.hostname:
            raise ConfigError(f"hostname must look like 'name@host' (Celery's node name), not {self.hostname!r}: "
                              f"use {self.hostname + '@127.0.0.1'!r}")
        try:
            json.dumps(self.settings)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"settings must be JSON values (they are passed to the worker process): {exc}") from None
        bad = [k for k in self.settings if not isinstance(k, str) or k != k.lower()]
        if bad:
            raise ConfigError(f"settings keys must be Celery's lowercase setting names (task_acks_late, ...), got {bad}")

    @property
    def node_name(self) -> str:
        """The part of the hostname before '@' ('' when the hostname is generated)."""
        return self.hostname.split("@", 1)[0]

    def with_hostname(self, hostname: str) -> WorkerSpec:
        """A copy with another node name (scaling out clones a spec)."""
        return WorkerSpec(self.app, self.pool, self.concurrency, self.queues, hostname, self.loglevel,
                          dict(self.env), self.extra_args, dict(self.settings), self.pythonpath)

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "pool": self.pool, "concurrency": self.concurrency, "queues": list(self.queues),
                "hostname": self.hostname, "loglevel": self.loglevel, "env": dict(self.env),
                "extra_args": list(self.extra_args), "settings": dict(self.settings),
                "pythonpath": list(self.pythonpath)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkerSpec:
        known = {"app", "pool", "concurrency", "queues", "hostname", "loglevel", "env", "extra_args", "settings",
                 "pythonpath"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"WorkerSpec has no field(s) {unknown}; known: {sorted(known)}")
        kw = dict(d)
        for k in ("queues", "extra_args", "pythonpath"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class KilledChild:
    """A pool child the harness SIGKILLed, and the task it was executing."""

    hostname: str
    pid: int
    task_id: str | None
    task_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "pid": self.pid, "task_id": self.task_id, "task_name": self.task_name}


def _children_of(pid: int) -> list[int]:
    """Direct children of `pid`, alive (zombies excluded).

    Reads ``/proc/<pid>/task/*/children`` (one small file per thread) instead of scanning every
    process of the machine as psutil does: on a busy CI box that scan takes seconds, and a
    trigger must kill a pool child within milliseconds.
    """
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except FileNotFoundError:
        return []
    except OSError:
        tasks = []
    if not tasks or not (tasks[0] / "children").exists():
        import psutil  # no CONFIG_PROC_CHILDREN: the slow way

        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=False)
                    if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []
    for t in tasks:
        try:
            found.extend(int(x) for x in (t / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    alive = []
    for c in dict.fromkeys(found):
        try:
            with open(f"/proc/{c}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            alive.append(c)
    return alive


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until true or raise TimeoutError naming `what`.

    >>> wait_until(lambda: True, 1.0, "nothing")
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """One `celery worker` (main process + pool children) under the harness's control.

    Args:
        spec: what to run.
        broker_url, backend_url: the URLs the worker uses (the stack's worker-role proxies).
        control_url: the broker URL the harness pings and inspects through (default
            `broker_url`; a Run passes the direct, unproxied URL so faults on the worker's proxy
            do not blind the harness).
        history_dir, run_id: record the worker's history there (both or neither).
        log_dir: where the worker's log goes (default: a temp dir removed by `stop`).
        ready_timeout: seconds to wait for the first ping reply.
    """

    def __init__(self, spec: WorkerSpec, *, broker_url: str, backend_url: str, control_url: str | None = None,
                 history_dir: Path | str | None = None, run_id: str | None = None,
                 log_dir: Path | None = None, ready_timeout: float = 30.0) -> None:
        if (history_dir is None) != (run_id is None):
            raise ConfigError("history_dir and run_id go together: pass both to record the worker's history, "
                              "or neither")
        self.spec = spec
        self.broker_url = broker_url
        self.backend_url = backend_url
        self.control_url = control_url or broker_url
        self.history_dir = None if history_dir is None else Path(history_dir)
        self.run_id = run_id
        self.ready_timeout = ready_timeout
        self.hostname = spec.hostname or f"chaos-{secrets.token_hex(3)}@127.0.0.1"
        self._own_dir = log_dir is None
        # Created at the first spawn, so a worker that never starts leaves no directory behind.
        self._log_dir: Path | None = log_dir
        # The worker's own TMPDIR: multiprocessing/billiard leave a pymp-* dir there when a pool
        # process is SIGKILLed (which faults do on purpose); stop() removes it with them.
        self._tmp_dir: Path | None = None
        self._proc: ManagedProcess | None = None
        self._generation = 0
        self._control_app: Any = None
        self._control_lock = threading.Lock()
        self.started_at: float | None = None

    # -- command line --------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "harness.workers.launch", "-A", s.app, "worker", "-P", s.pool,
                "-c", str(s.concurrency), "-n", self.hostname, "--loglevel", s.loglevel,
                "--without-gossip", "--without-mingle"]
        if s.queues:
            argv += ["-Q", ",".join(s.queues)]
        return argv + list(s.extra_args)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # A worker records only what this WorkerProcess asks for, never what leaked from the
        # harness's own environment.
        for var in ("CHAOS_HISTORY_DIR", "CHAOS_RUN_ID", "CHAOS_PROCESS_NAME", "CHAOS_WORKER_SETTINGS"):
            env.pop(var, None)
        env.update({"CHAOS_BROKER_URL": self.broker_url, "CHAOS_BACKEND_URL": self.backend_url,
                    "PYTHONUNBUFFERED": "1"})
        if self.spec.settings:
            env["CHAOS_WORKER_SETTINGS"] = json.dumps(self.spec.settings)
        if self.history_dir is not None and self.run_id is not None:
            env["CHAOS_HISTORY_DIR"] = str(self.history_dir)
            env["CHAOS_RUN_ID"] = self.run_id
        paths = [*self.spec.pythonpath, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        if self._tmp_dir is None:
            self._tmp_dir = Path(reaper.make_temp_dir("chaos-worker-tmp-"))
        env["TMPDIR"] = str(self._tmp_dir)
        env[ENV_READY_FILE] = str(self._tmp_dir / f"ready.{self._generation}")
        env.pop(ENV_BROKER_WAIT, None)
        env.update(self.spec.env)
        return env

    def _ready_file(self) -> Path | None:
        # One name per generation: a restarted worker must not look ready from its last life.
        return None if self._tmp_dir is None else self._tmp_dir / f"ready.{self._generation}"

    # -- state ---------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The worker's main process id (changes on restart)."""
        if self._proc is None:
            raise RuntimeError(f"worker {self.hostname} is not started: call start() first")
        return self._proc.pid

    @property
    def log_dir(self) -> Path:
        """Where the worker's logs go (a temp dir made at the first spawn when none was given)."""
        if self._log_dir is None:
            self._log_dir = Path(reaper.make_temp_dir("chaos-worker-"))
        return self._log_dir

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.hostname.split('@')[0]}-{self._generation}.log"

    @property
    def pool(self) -> str:
        return self.spec.pool

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def children(self) -> list[int]:
        """Pids of the pool child processes (prefork; empty for threads and solo)."""
        if not self.is_running():
            return []
        return _children_of(self.pid)

    def pids(self) -> list[int]:
        """The main process and its children (for leak checks)."""
        return [self.pid, *self.children()] if self.is_running() else []

    # -- lifecycle -----------------------------------------------------------------------------
    def spawn(self, *, broker_wait: float = 0.0) -> WorkerProcess:
        """Launch without waiting (a group spawns all its workers, then waits for each).

        `broker_wait` > 0: the broker may still be booting (a stack that is starting); the
        worker imports its app meanwhile, then polls the broker for up to that many seconds
        before Celery starts, instead of sleeping through Celery's first connection retry.
        """
        if self.is_running():
            return self
        self._generation += 1
        env = self._env()
        if broker_wait > 0:
            env[ENV_BROKER_WAIT] = f"{broker_wait:.3f}"
        self._proc = ManagedProcess(f"celery worker {self.hostname}", self._argv(),
                                    log_path=self.log_path, env=env)
        self._proc.start()
        self.started_at = time.monotonic()
        return self

    def start(self) -> WorkerProcess:
        """Start and wait until the worker answers a ping (bounded by `ready_timeout`)."""
        self.spawn()
        try:
            self.wait_ready()
        except BaseException as exc:
            self.kill()
            cause = self._import_failure()
            self._remove_tmp_dir()
            if cause:
                raise ConfigError(f"{cause}: put the app's project on the workers' PYTHONPATH (the Deployment's "
                                  "env, or run from the project directory with PYTHONPATH=.)") from exc
            raise
        return self

    def _import_failure(self) -> str | None:
        """The line a worker that could not import its app printed (see `launch.main`), if any."""
        from harness.workers.launch import IMPORT_FAILED

        if self._proc is None or self._proc.log_path is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(self._proc.log_path).read_text(errors="replace").splitlines():
                if line.startswith(IMPORT_FAILED):
                    return line.removeprefix("chaos-worker: ").split(" (sys.path:")[0]
        return None

    def _remove_tmp_dir(self) -> None:
        if self._tmp_dir is not None:
            reaper.remove_dir(self._tmp_dir)
            self._tmp_dir = None

    def _control(self) -> Any:
        if self._control_app is None:
            from celery import Celery

            app = Celery(f"chaos-control-{self.hostname}", broker=self.control_url, backend=None,
                         set_as_current=False)
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_connection_timeout = 2
            app.conf.broker_connection_max_retries = 0
            self._control_app = app
        return self._control_app

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the worker answers a broadcast ping within `timeout` seconds."""
        with self._control_lock:
            replies = self._control().control.ping(destination=[self.hostname], timeout=timeout)
        return bool(replies)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the worker answers a ping; StackStartTimeout with its log tail after `timeout`.

        The launcher creates a ready file when Celery sends ``worker_ready``; checking for it
        every 20 ms costs nothing, and the ping that confirms it answers at once. Without the
        file (an app that never reaches ``worker_ready``), a ping every second still decides.
        """
        ready_file = self._ready_file()
        last_ping = [time.monotonic()]

        def probe() -> None:
            if ready_file is not None and not ready_file.exists():
                now = time.monotonic()
                if now - last_ping[0] < _FALLBACK_PING_S:
                    raise TimeoutError(f"{self.hostname} has not sent worker_ready yet")
                last_ping[0] = now
            if not self.ping():
                raise TimeoutError(f"no ping reply from {self.hostname}")

        if self._proc is None:
            raise RuntimeError(f"worker {self.hostname} is not started: call spawn() or start() first")
        self._proc.wait_ready(probe, timeout=self.ready_timeout if timeout is None else timeout,
                              what=f"a ping reply from {self.hostname}",
                              hint="Check the app import path (and pythonpath), the broker URL and the queue names.",
                              max_interval=_READY_POLL_S)

    def _signal_main(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def warm_shutdown(self, timeout: float = 30.0) -> bool:
        """SIGTERM to the main process: stop consuming, finish running tasks, exit.

        Only the main process is signalled: a SIGTERM to the whole group would kill pool
        children mid-task, which is a different fault. After `timeout` the group is SIGKILLed.
        Returns whether the worker exited by itself.
        """
        if not self.is_running():
            return True
        self._signal_main(signal.SIGTERM)
        clean = self._wait_exit(timeout)
        self._reap()
        return clean

    def cold_shutdown(self, timeout: float = 15.0) -> bool:
        """SIGQUIT to the main process: exit at once, cutting running tasks. Returns whether it exited."""
        if not self.is_running():
            return True
        self._signal_main(signal.SIGQUIT)
        clean = self._wait_exit(timeout)
        self._reap()
        return clean

    # Names of the lead's first version, kept for callers.
    def terminate(self, timeout: float = 30.0) -> None:
        """Warm shutdown (see `warm_shutdown`)."""
        self.warm_shutdown(timeout)

    def quit(self, timeout: float = 15.0) -> None:
        """Cold shutdown (see `cold_shutdown`)."""
        self.cold_shutdown(timeout)

    def kill(self) -> list[int]:
        """SIGKILL the whole worker (main process and pool children); returns the pids killed."""
        pids = self.pids()
        if self._proc is not None:
            self._proc.kill()
        return pids

    def _reap(self) -> None:
        # Whatever is left of the group (children orphaned by the main process) goes too.
        if self._proc is not None:
            self._proc.kill()

    def restart(self, timeout: float = 30.0) -> WorkerProcess:
        """Warm shutdown (bounded by `timeout`), then start again with the same hostname."""
        self.warm_shutdown(timeout)
        return self.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown bounded by `timeout`, then SIGKILL what is left; remove an own log dir. Idempotent."""
        try:
            self.warm_shutdown(timeout)
        finally:
            self._reap()
            if self._control_app is not None:
                with contextlib.suppress(Exception):
                    self._control_app.close()
                self._control_app = None
            if self._own_dir and self._log_dir is not None:
                reaper.remove_dir(self._log_dir)
                self._log_dir = None
            self._remove_tmp_dir()

    def log(self, lines: int = 40) -> str:
        """The last lines of the current log ('' once an own temp log dir was removed by stop)."""
        if self._log_dir is None:
            return ""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> WorkerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop(timeout=1.0)  # the error already carries the log tail
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self.is_running() and self._proc is not None else "stopped"
        return f"WorkerProcess({self.hostname!r}, {self.spec.pool}, {state})"

    # -- inspection ----------------------------------------------------------------------------
    def inspect(self, method: str, timeout: float = 1.0) -> list[dict[str, Any]]:
        """``celery inspect <method>`` for this worker only (active, reserved, scheduled, ...).

        Raises HarnessError when the worker does not answer within `timeout`.
        """
        with self._control_lock:
            insp = self._control().control.inspect(destination=[self.hostname], timeout=timeout)
            reply = getattr(insp, method)()
        if not reply or self.hostname not in reply:
            raise HarnessError(f"worker {self.hostname} did not answer `inspect {method}` within {timeout:.1f} s")
        return list(reply[self.hostname] or [])

    def conf(self, timeout: float = 2.0) -> dict[str, Any]:
        """The worker's effective Celery configuration (``inspect conf``, defaults included)."""
        with self._control_lock:
            insp = self._control().control.inspect(destination=[self.hostname], timeout=timeout)
            reply = insp.conf(with_defaults=True)
        if not reply or not isinstance(reply.get(self.hostname), dict):
            raise HarnessError(f"worker {self.hostname} did not answer `inspect conf` within {timeout:.1f} s")
        return dict(reply[self.hostname])

    def rate_limits(self, timeout: float = 2.0) -> dict[str, str]:
        """Task name -> ``rate_limit`` as this worker enforces it (``inspect registered rate_limit``:
        the task's own, after ``task_annotations`` and ``task_default_rate_limit``); unlimited
        tasks are left out."""
        with self._control_lock:
            insp = self._control().control.inspect(destination=[self.hostname], timeout=timeout)
            reply = insp.registered("rate_limit")
        if not reply or self.hostname not in reply:
            raise HarnessError(f"worker {self.hostname} did not answer `inspect registered` within {timeout:.1f} s")
        out: dict[str, str] = {}
        for line in reply[self.hostname] or ():
            # "name [rate_limit=10/s]"; a task without a limit is its bare name.
            name, sep, rest = str(line).partition(" [rate_limit=")
            if sep and rest.endswith("]") and rest[:-1] not in ("", "None"):
                out[name] = rest[:-1]
        return out

    def busy(self, timeout: float = 1.0) -> dict[str, int]:
        """How many tasks the worker holds: ``{"active": n, "reserved": n, "scheduled": n}``."""
        return {m: len(self.inspect(m, timeout)) for m in ("active", "reserved", "scheduled")}

    # -- pool children -------------------------------------------------------------------------
    def _require_prefork(self, what: str) -> None:
        if self.spec.pool != "prefork":
            raise UnsupportedFault(
                f"{what} needs the prefork pool, but worker {self.hostname} runs the {self.spec.pool} pool "
                "(its tasks run inside the worker's main process): use kill_worker instead, or pool='prefork'")

    def kill_child(self, pid: int) -> None:
        """SIGKILL pool child `pid` of this worker (refuses any other pid)."""
        self._require_prefork("killing a pool child")
        if pid not in self.children():
            raise HarnessError(f"pid {pid} is not a pool child of worker {self.hostname} "
                               f"(children: {self.children()}); refusing to kill it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def find_child_running(self, *, task_name: str | None = None, task_id: str | None = None,
                           timeout: float = 10.0, interval: float = 0.05) -> KilledChild:
        """Wait (bounded) until a pool child executes a matching task; return it, not killed.

        Reads ``inspect active`` (its ``worker_pid``). Raises TimeoutError naming what was awaited.
        """
        self._require_prefork("finding the pool child running a task")
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                for t in self.inspect("active", timeout=min(1.0, max(0.2, deadline - time.monotonic()))):
                    seen.append(str(t.get("name")))
                    if task_name is not None and t.get("name") != task_name:
                        continue
                    if task_id is not None and t.get("id") != task_id:
                        continue
                    pid = t.get("worker_pid")
                    if isinstance(pid, int) and pid in self.children():
                        return KilledChild(self.hostname, pid, t.get("id"), t.get("name"))
            except HarnessError:
                pass  # no answer this round: a busy main process; try again until the deadline
            if time.monotonic() >= deadline:
                want = " ".join(x for x in (f"name={task_name}" if task_name else "",
                                            f"id={task_id}" if task_id else "") if x) or "any task"
                raise TimeoutError(f"no pool child of {self.hostname} ran {want} within {timeout:.1f} s "
                                   f"(active tasks seen: {sorted(set(seen))[:10]})")
            time.sleep(interval)

    def kill_child_running(self, *, task_name: str | None = None, task_id: str | None = None,
                           timeout: float = 10.0) -> KilledChild:
        """SIGKILL the pool child executing a matching task as soon as one is seen (bounded wait)."""
        found = self.find_child_running(task_name=task_name, task_id=task_id, timeout=timeout)
        self.kill_child(found.pid)
        return found
