"""Real `celery worker` processes for any Celery app given by import path.

Responsibility: start a worker in its own process group with the stack's worker-role URLs,
wait until it answers a ping, and stop, kill or restart it without leaving a process behind.

Example:
    >>> spec = WorkerSpec(app="sample_system.app:app", queues=("orders",), concurrency=2)
    >>> with WorkerProcess(spec, broker_url=..., backend_url=...) as w:     # doctest: +SKIP
    ...     w.kill()          # SIGKILL the whole worker (parent and pool children)
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError, StackStartTimeout
from harness.stack._process import ManagedProcess, log_tail

Pool = Literal["prefork", "threads", "solo"]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What to run: `celery -A APP worker -P POOL -c N -Q QUEUES -n HOSTNAME` plus env and options."""

    app: str
    pool: Pool = "prefork"
    concurrency: int = 2
    queues: tuple[str, ...] = ()
    hostname: str = ""
    loglevel: str = "INFO"
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.pool not in ("prefork", "threads", "solo"):
            raise ConfigError(f"pool must be prefork, threads or solo, not {self.pool!r}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, not {self.concurrency}")
        if not self.app or ":" not in self.app and "." not in self.app and not self.app.isidentifier():
            raise ConfigError(f"app must be an import path like 'package.module:app', not {self.app!r}")


class WorkerProcess:
    """One `celery worker` (parent + pool children) under the harness's control."""

    def __init__(self, spec: WorkerSpec, *, broker_url: str, backend_url: str,
                 log_dir: Path | None = None, ready_timeout: float = 30.0) -> None:
        self.spec = spec
        self.broker_url = broker_url
        self.backend_url = backend_url
        self.ready_timeout = ready_timeout
        self.hostname = spec.hostname or f"chaos-{secrets.token_hex(3)}@127.0.0.1"
        self._own_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="chaos-worker-"))
        self._proc: ManagedProcess | None = None
        self._generation = 0

    def _argv(self) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "celery", "-A", s.app, "worker", "-P", s.pool, "-c", str(s.concurrency),
                "-n", self.hostname, "--loglevel", s.loglevel, "--without-gossip", "--without-mingle"]
        if s.queues:
            argv += ["-Q", ",".join(s.queues)]
        return argv + list(s.extra_args)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"CHAOS_BROKER_URL": self.broker_url, "CHAOS_BACKEND_URL": self.backend_url,
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.spec.env)
        return env

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the worker is not started")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.hostname.split('@')[0]}-{self._generation}.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def start(self) -> WorkerProcess:
        """Start and wait until the worker answers a ping (bounded by ready_timeout)."""
        self._generation += 1
        self._proc = ManagedProcess(f"celery worker {self.hostname}", self._argv(),
                                    log_path=self.log_path, env=self._env())
        self._proc.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        from celery import Celery

        probe_app = Celery("chaos-probe", broker=self.broker_url, backend=None)
        probe_app.conf.broker_connection_retry_on_startup = False
        probe_app.conf.broker_connection_timeout = 2

        def ping() -> None:
            replies = probe_app.control.ping(destination=[self.hostname], timeout=0.5)
            if not replies:
                raise TimeoutError(f"no ping reply from {self.hostname}")

        assert self._proc is not None
        try:
            self._proc.wait_ready(ping, timeout=self.ready_timeout, what=f"a ping reply from {self.hostname}",
                                  hint="Check the app import path, the broker URL and the queue names.")
        except StackStartTimeout:
            raise
        finally:
            probe_app.close()

    def children(self) -> list[int]:
        """Pids of the pool child processes (prefork), from /proc."""
        if not self.is_running():
            return []
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=False)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole worker: parent and pool children (the process group)."""
        if self._proc is not None:
            self._proc.kill()

    def terminate(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM): finish running tasks, then exit; SIGKILL after `timeout`."""
        if self._proc is not None:
            self._proc.stop(timeout=timeout, sig=signal.SIGTERM)

    def quit(self, timeout: float = 15.0) -> None:
        """Cold shutdown (SIGQUIT): exit at once, no waiting for running tasks."""
        if self._proc is not None:
            self._proc.stop(timeout=timeout, sig=signal.SIGQUIT)

    def restart(self) -> None:
        self.terminate()
        self.start()

    def stop(self) -> None:
        self.terminate(timeout=10)
        if self._own_dir:
            import shutil

            shutil.rmtree(self.log_dir, ignore_errors=True)

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` until true or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
