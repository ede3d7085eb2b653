"""Helpers for the sample-system tests: real `celery worker` subprocesses and bounded waits.

Private to tests/sample_system (harness/workers is the public way to run workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery

from sample_system import Settings, make_app
from sample_system.partner_api import PartnerControl
from sample_system.topology import SERVICE_QUEUES
from sample_system.workload import SampleWorkload

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


class SampleWorker:
    """One `celery -A sample_system worker` process group configured by `settings` (via SAMPLE_* env)."""

    def __init__(self, settings: Settings, log_dir: Path, *, queues: tuple[str, ...] = SERVICE_QUEUES,
                 concurrency: int = 2, ready_timeout: float = 45.0, command: tuple[str, ...] = (CELERY,),
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.command = command
        self.extra_env = dict(extra_env or {})
        self.queues = queues
        self.concurrency = concurrency
        self.ready_timeout = ready_timeout
        self.nodename = f"sample-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self.log_path = log_dir / f"{self.nodename.split('@')[0]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def start(self, app: Celery) -> SampleWorker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAMPLE_")}
        env.update(self.settings.to_env())
        # Pool processes killed by a test leave multiprocessing's pymp-* dirs in TMPDIR: keep them in the test's dir.
        env["TMPDIR"] = str(self.log_path.parent)
        env.update(self.extra_env)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it until stop()
        try:
            self.proc = subprocess.Popen(
                [*self.command, "-A", "sample_system", "worker", "-Q", ",".join(self.queues), "-P", "prefork",
                 "-c", str(self.concurrency), "--loglevel=INFO", "-n", self.nodename, "--without-gossip",
                 "--without-mingle"],
                env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            deadline = time.monotonic() + self.ready_timeout
            last_error: OSError | None = None
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker {self.nodename} exited with {self.proc.returncode} before "
                                         f"answering ping; log tail:\n{self.log_tail()}")
                try:
                    if app.control.ping(destination=[self.nodename], timeout=0.5):
                        return self
                    last_error = None
                except OSError as exc:
                    # A pooled connection from before an earlier test restarted the session's
                    # broker is dead. kombu reconnects it on the next use: just ask again. (Never
                    # force_close_all() the pool: kombu keeps pools in a process-wide registry, so
                    # a closed one would come back and fail every later test.)
                    last_error = exc
                    time.sleep(0.05)
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker {self.nodename} did not answer ping within {self.ready_timeout}s "
                                         f"(last error: {last_error!r}); log tail:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Pool children may outlive a parent that was killed: the whole group goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_worker(settings: Settings, log_dir: Path, **kw: Any) -> Iterator[tuple[Celery, SampleWorker]]:
    """A producer app and a started worker for `settings`; the worker is always stopped."""
    app = make_app(settings)
    worker = SampleWorker(settings, log_dir, **kw)
    try:
        worker.start(app)
        yield app, worker
    finally:
        worker.stop()
        app.close()


@dataclass(frozen=True)
class Partner:
    """The partner API: `control` talks to it directly, `url` goes through the fault proxy."""

    control: PartnerControl
    url: str
    direct_url: str


def prepared_workload(settings: Settings) -> SampleWorkload:
    """The sample workload for `settings`, set up (queues declared and purged, effect store empty)."""
    workload = SampleWorkload(settings)
    app = make_app(settings)
    try:
        workload.setup(app)
    finally:
        app.close()
    return workload


def stack_settings(stack: Any, partner: Partner, db_dir: Path, **overrides: Any) -> Settings:
    """Settings pointing at `stack`, the proxied partner API and a fresh SQLite file in `db_dir`."""
    base: dict[str, Any] = {
        "broker": "rabbitmq" if stack.urls.broker_kind == "amqp" else "redis",
        "broker_url": stack.urls.broker_url,
        "backend_url": stack.urls.backend_url,
        "db_url": f"sqlite:///{db_dir / 'effects.sqlite3'}",
        "partner_url": partner.url,
    }
    base.update(overrides)
    return Settings(**base)
