"""A group of workers of one run: start them together, find them by name, scale, stop them all.

Responsibility: own every `WorkerProcess` of a run (so none outlives it: `stop` reaps all,
even after a failed start), start them in parallel (spawn all, then wait for each ping),
scale a spec's workers up and down, and answer "is any worker still holding a task?".

Example:
    >>> specs = [WorkerSpec(app="tests.engine.engine_app:app", hostname="w1@127.0.0.1")]
    >>> with WorkerGroup(specs, broker_url=..., backend_url=...) as group:   # doctest: +SKIP
    ...     group.get("w1").kill_child_running(task_name="engine.slow")
    ...     group.scale(3)                 # two more workers like w1: w1-2, w1-3
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.workers.process import WorkerProcess, WorkerSpec

__all__ = ["WorkerGroup"]


class WorkerGroup:
    """Every worker of one run, started together and always reaped together.

    Args:
        specs: one `WorkerSpec` per worker (hostnames must be distinct when given).
        broker_url, backend_url, control_url, history_dir, run_id, ready_timeout: passed to
            each `WorkerProcess`.
        log_dir: where the workers' logs go (default: one temp dir per worker).
    """

    def __init__(self, specs: Sequence[WorkerSpec], *, broker_url: str, backend_url: str,
                 control_url: str | None = None, history_dir: Path | str | None = None,
                 run_id: str | None = None, log_dir: Path | None = None, ready_timeout: float = 30.0) -> None:
        if not specs:
            raise ConfigError("a WorkerGroup needs at least one WorkerSpec, e.g. [WorkerSpec(app='pkg.mod:app')]")
        names = [s.hostname for s in specs if s.hostname]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"worker hostnames must be distinct, {dupes} are used twice: give each spec its own")
        self._kw: dict[str, Any] = {"broker_url": broker_url, "backend_url": backend_url,
                                    "control_url": control_url, "history_dir": history_dir, "run_id": run_id,
                                    "log_dir": log_dir, "ready_timeout": ready_timeout}
        self.workers: list[WorkerProcess] = [WorkerProcess(s, **self._kw) for s in specs]
        self._retired: list[WorkerProcess] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> WorkerGroup:
        """Spawn every worker, then wait for each ping; on any failure stop them all and re-raise."""
        self.spawn()
        return self.wait_ready()

    def spawn(self, *, broker_wait: float = 0.0) -> WorkerGroup:
        """Launch every worker without waiting (see `WorkerProcess.spawn` for `broker_wait`).

        With `broker_wait`, the workers may be spawned right after `LocalStack.boot`, so their
        start-up overlaps the broker's boot; then `wait_ready`.
        """
        try:
            for w in self.workers:
                w.spawn(broker_wait=broker_wait)
        except BaseException:
            self.stop(timeout=2.0)
            raise
        return self

    def wait_ready(self) -> WorkerGroup:
        """Wait for each spawned worker's ping; on any failure stop them all and re-raise."""
        try:
            for w in self.workers:
                w.wait_ready()
        except BaseException:
            self.stop(timeout=2.0)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Warm-stop every worker (bounded by `timeout` in all), SIGKILL what is left. Idempotent."""
        deadline = time.monotonic() + timeout
        everyone = [*self.workers, *self._retired]
        # Ask all main processes to stop first, so they shut down in parallel.
        for w in everyone:
            if w.is_running():
                with contextlib.suppress(ProcessLookupError, RuntimeError):
                    os.kill(w.pid, signal.SIGTERM)
        errors: list[BaseException] = []
        for w in everyone:
            try:
                w.stop(timeout=max(0.1, deadline - time.monotonic()))
            except BaseException as exc:  # noqa: BLE001 - every worker must be reaped
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> WorkerGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(list(self.workers))

    def __len__(self) -> int:
        return len(self.workers)

    # -- lookup --------------------------------------------------------------------------------
    @property
    def hostnames(self) -> list[str]:
        return [w.hostname for w in self.workers]

    def get(self, name: str | int | None = None) -> WorkerProcess:
        """A worker by node name (``"w1"``), full hostname (``"w1@127.0.0.1"``) or index; None: the first."""
        if name is None:
            return self.workers[0]
        if isinstance(name, int):
            if not 0 <= name < len(self.workers):
                raise ConfigError(f"worker index {name} is out of range: this group has {len(self.workers)} workers")
            return self.workers[name]
        for w in self.workers:
            if w.hostname == name or w.hostname.split("@", 1)[0] == name:
                return w
        raise ConfigError(f"no worker named {name!r} in this run: workers are {self.hostnames}")

    def select(self, name: str | None) -> list[WorkerProcess]:
        """Workers a fault targets: one by name, every worker for ``"*"``, the first for None."""
        if name == "*":
            return list(self.workers)
        return [self.get(name)]

    def owner_of(self, pid: int) -> WorkerProcess | None:
        """The worker whose main process or pool child has `pid`."""
        for w in self.workers:
            if w.is_running() and (w.pid == pid or pid in w.children()):
                return w
        return None

    def pids(self) -> list[int]:
        return [p for w in self.workers for p in w.pids()]

    # -- scaling -------------------------------------------------------------------------------
    def scale(self, count: int, *, like: str | None = None, timeout: float = 30.0) -> list[str]:
        """Run `count` workers: clone spec `like` (default the first) up, warm-stop the newest down.

        Returns the hostnames started (scale up) or stopped (scale down).
        """
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"scale needs a worker count >= 1, got {count!r}: stop the run to stop every worker")
        changed: list[str] = []
        if count > len(self.workers):
            base = self.get(like)
            node, _, host = base.hostname.partition("@")
            new: list[WorkerProcess] = []
            n = len(self.workers) + 1
            taken = set(self.hostnames) | {w.hostname for w in self._retired}
            while len(self.workers) + len(new) < count:
                hostname = f"{node}-{n}@{host}"
                n += 1
                if hostname in taken:
                    continue
                w = WorkerProcess(base.spec.with_hostname(hostname), **self._kw)
                new.append(w)
            try:
                for w in new:
                    w.spawn()
                for w in new:
                    w.wait_ready(timeout)
            except BaseException:
                for w in new:
                    w.stop(timeout=2.0)
                raise
            self.workers.extend(new)
            changed = [w.hostname for w in new]
        elif count < len(self.workers):
            leaving = self.workers[count:]
            self.workers = self.workers[:count]
            for w in leaving:
                w.warm_shutdown(timeout)
                self._retired.append(w)
            changed = [w.hostname for w in leaving]
        return changed

    # -- quiescence ----------------------------------------------------------------------------
    def busy(self, timeout: float = 1.0) -> dict[str, dict[str, int]]:
        """Per running worker, how many tasks it holds (active / reserved / scheduled).

        One broadcast per method to every running worker; a worker that does not answer raises
        HarnessError (it cannot be called idle).
        """
        running = [w for w in self.workers if w.is_running()]
        if not running:
            return {}
        out: dict[str, dict[str, int]] = {w.hostname: {} for w in running}
        control = running[0]
        with control._control_lock:
            insp = control._control().control.inspect(destination=[w.hostname for w in running], timeout=timeout)
            for method in ("active", "reserved", "scheduled"):
                reply = getattr(insp, method)() or {}
                missing = [h for h in out if h not in reply]
                if missing:
                    raise HarnessError(f"workers {missing} did not answer `inspect {method}` within {timeout:.1f} s")
                for h in out:
                    out[h][method] = len(reply[h] or [])
        return out
