"""Run Locust headless in subprocesses: bounded in time, in their own process groups, always reaped.

Responsibility: `LoadSpec` (what load: locustfile, users, rate, duration, distribution) plus
`LoadTarget` (where to) -> Locust processes started with ``python -m harness.load._locust_main``
(so gevent's monkey-patching stays in them), waited for with a deadline, stopped early on
request, and parsed into a `LoadResult` from the summaries its processes write on quit.

Distribution, for load that outgrows one process (one core per Locust process):

- ``workers=0``: one Locust process (a local runner).
- ``workers=N, distribution="processes"``: ``locust --processes N`` (a master that forks N workers).
- ``workers=N, distribution="master"``: a ``--master`` process and N ``--worker`` processes on
  127.0.0.1, started separately (the layout of a multi-machine run, on one machine).

Users are spread over the workers by Locust; ``rate_per_s`` is the total target rate, paced per
user (``rate_per_s / users`` each), so it holds whatever the distribution.

Use it in the background while faults come and go::

    with LoadRun(LoadSpec("loadtests/locustfile.py", users=10, rate_per_s=50, run_time_s=60),
                 LoadTarget.from_urls(stack.urls, run_id=run_id, history_dir=history)) as load:
        ... inject faults, heal ...
        result = load.wait()           # or load.stop() to end it early
    print(result.ok, result.latency_ms.p99)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError, HarnessError
from harness.load._locust_main import ENV_SUMMARY_DIR
from harness.load.stats import LoadResult, load_result_from_summaries
from harness.load.target import LoadTarget
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, free_port, log_tail

__all__ = ["LoadError", "LoadRun", "LoadSpec", "run_load"]

Distribution = Literal["processes", "master"]

# Options the runner sets itself; passing them in extra_args would contradict the spec.
_OWNED_OPTIONS = ("-f", "--locustfile", "-u", "--users", "-r", "--spawn-rate", "-t", "--run-time", "--headless",
                  "--master", "--worker", "--processes", "--expect-workers", "--master-host", "--master-port",
                  "--master-bind-host", "--master-bind-port", "-s", "--stop-timeout", "--autostart")
_USER_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LoadError(HarnessError):
    """Locust did not produce a result (it failed to start, crashed or hung); the message has its log tail."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What load to run (validated when built; see the module docstring for distribution).

    Options:
        locustfile: path of the locustfile (e.g. ``loadtests/locustfile.py``).
        users: peak Locust users; spawn_rate: users started per second (default: all at once).
        run_time_s: how long Locust runs once started (it stops by itself).
        rate_per_s: total target submits per second, paced per user (None: the target's
            ``user_rate``; 0 there means back to back).
        workers / distribution: see the module docstring.
        user_classes: user class names to run (default: every class in the locustfile).
        stop_timeout_s: at the end, in-flight submits get this long to finish (Locust's ``-s``).
        startup_timeout_s: time allowed for imports, worker connection and spawning.
        env: extra environment variables for the Locust processes.
        extra_args: further Locust options (not those the spec sets).
        loglevel: Locust's log level.

    Example:
        >>> LoadSpec("loadtests/locustfile.py", users=4, rate_per_s=20, run_time_s=5).user_rate
        5.0
    """

    locustfile: str
    users: int = 1
    spawn_rate: float | None = None
    run_time_s: float = 10.0
    rate_per_s: float | None = None
    workers: int = 0
    distribution: Distribution = "processes"
    user_classes: tuple[str, ...] = ()
    stop_timeout_s: float = 5.0
    startup_timeout_s: float = 60.0
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    loglevel: str = "INFO"

    def __post_init__(self) -> None:
        path = Path(self.locustfile)
        if not path.is_file():
            raise ConfigError(f"locustfile {self.locustfile!r} does not exist: pass the path of a locustfile, "
                              "e.g. 'loadtests/locustfile.py'")
        object.__setattr__(self, "locustfile", str(path.resolve()))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "user_classes", tuple(self.user_classes))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        problems: list[str] = []
        if self.users < 1:
            problems.append(f"users={self.users} must be >= 1")
        if self.spawn_rate is not None and not (math.isfinite(self.spawn_rate) and self.spawn_rate > 0):
            problems.append(f"spawn_rate={self.spawn_rate} must be > 0 users per second (None: all at once)")
        if not (math.isfinite(self.run_time_s) and self.run_time_s >= 1):
            problems.append(f"run_time_s={self.run_time_s} must be >= 1 second (Locust's --run-time resolution)")
        if self.rate_per_s is not None and not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            problems.append(f"rate_per_s={self.rate_per_s} must be > 0 submits per second (None: the target's pacing)")
        if self.workers < 0:
            problems.append(f"workers={self.workers} must be >= 0 (0: one Locust process)")
        if self.distribution not in ("processes", "master"):
            problems.append(f"distribution={self.distribution!r}: use 'processes' (--processes N) or 'master' "
                            "(a --master and N --worker processes)")
        if self.workers and self.users < self.workers:
            problems.append(f"users={self.users} < workers={self.workers}: some workers would run no user; "
                            "use at least one user per worker")
        bad = [c for c in self.user_classes if not _USER_CLASS.match(c)]
        if bad:
            problems.append(f"user_classes {bad} are not class names")
        if self.stop_timeout_s < 0 or self.startup_timeout_s <= 0:
            problems.append("stop_timeout_s must be >= 0 and startup_timeout_s > 0 seconds")
        owned = [a for a in self.extra_args if a.split("=", 1)[0] in _OWNED_OPTIONS]
        if owned:
            problems.append(f"extra_args {owned} set options the spec owns: use the LoadSpec fields "
                            "(users, spawn_rate, run_time_s, workers, distribution, stop_timeout_s) instead")
        if problems:
            raise ConfigError("invalid LoadSpec: " + "; ".join(problems))

    @property
    def user_rate(self) -> float | None:
        """Per-user pacing for `rate_per_s` (None when the spec sets no rate)."""
        return None if self.rate_per_s is None else self.rate_per_s / self.users

    @property
    def deadline_s(self) -> float:
        """Longest a run may take before the runner stops it: start-up + run time + stop time + slack."""
        return self.startup_timeout_s + self.run_time_s + self.stop_timeout_s + 15.0


def _common_args(spec: LoadSpec) -> list[str]:
    return ["-f", spec.locustfile, "--loglevel", spec.loglevel]


def _run_args(spec: LoadSpec) -> list[str]:
    spawn = spec.spawn_rate if spec.spawn_rate is not None else float(spec.users)
    return ["--headless", "-u", str(spec.users), "-r", f"{spawn:g}", "-t", f"{math.ceil(spec.run_time_s)}s",
            "-s", f"{spec.stop_timeout_s:g}", "--only-summary"]


def locust_commands(spec: LoadSpec, *, master_port: int | None = None,
                    python: str = sys.executable) -> list[tuple[str, list[str]]]:
    """The (name, argv) of every Locust process `spec` needs, master (or single) first.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "lf.py"; _ = f.write_text("")
    >>> [name for name, _ in locust_commands(LoadSpec(str(f), users=2, workers=2, distribution="master"),
    ...                                      master_port=5599)]
    ['locust-master', 'locust-worker-1', 'locust-worker-2']
    """
    head = [python, "-m", "harness.load._locust_main"]
    classes = list(spec.user_classes)
    extra = list(spec.extra_args)
    if spec.workers == 0:
        return [("locust", [*head, *_common_args(spec), *_run_args(spec), *extra, *classes])]
    if spec.distribution == "processes":
        return [("locust", [*head, *_common_args(spec), *_run_args(spec), "--processes", str(spec.workers),
                            *extra, *classes])]
    if master_port is None:
        raise ConfigError("distribution='master' needs a master_port")
    master = [*head, *_common_args(spec), *_run_args(spec), "--master", "--master-bind-host", "127.0.0.1",
              "--master-bind-port", str(master_port), "--expect-workers", str(spec.workers),
              "--expect-workers-max-wait", str(math.ceil(spec.startup_timeout_s)), *extra, *classes]
    cmds = [("locust-master", master)]
    for i in range(1, spec.workers + 1):
        cmds.append((f"locust-worker-{i}", [*head, *_common_args(spec), "--worker", "--master-host", "127.0.0.1",
                                            "--master-port", str(master_port), *extra, *classes]))
    return cmds


def locust_env(spec: LoadSpec, target: LoadTarget, summary_dir: Path,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Locust processes' environment: `base` (default os.environ) without stray ``LOCUST_*`` /
    ``CHAOS_*`` variables, then the target's, the spec's `env` and the summary directory."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if not k.startswith(("LOCUST_", "CHAOS_"))}
    if spec.user_rate is not None:
        target = dataclasses.replace(target, user_rate=spec.user_rate)
    env.update(target.to_env())
    env.update(spec.env)
    env[ENV_SUMMARY_DIR] = str(summary_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LoadRun:
    """A running Locust load (one or more processes); a context manager that always reaps them.

    `start()` returns at once; `wait()` waits for Locust to stop by itself (bounded by
    ``spec.deadline_s``) and `stop()` ends it early (SIGTERM to the master, so it collects the
    workers' last statistics, then SIGKILL of every process group after a grace period). Both
    return the `LoadResult`; the work directory (logs, summary) is removed on close unless
    `work_dir` was given.

    Example: see the module docstring.
    """

    def __init__(self, spec: LoadSpec, target: LoadTarget, *, work_dir: str | Path | None = None,
                 python: str = sys.executable, grace_s: float = 10.0) -> None:
        self.spec = spec
        self.target = target
        self.python = python
        self.grace_s = grace_s
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self._procs: list[ManagedProcess] = []
        self._started_at: float | None = None
        self._result: LoadResult | None = None
        self._seen_pids: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LoadRun:
        """Start every Locust process (master or single process first); a partial start is torn down."""
        if self._procs:
            raise RuntimeError("this LoadRun was already started: create a new LoadRun for another run")
        if self.work_dir is None:
            self.work_dir = Path(reaper.make_temp_dir("chaos-load-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = locust_env(self.spec, self.target, self.summary_dir)
        port = free_port() if (self.spec.workers and self.spec.distribution == "master") else None
        try:
            for name, argv in locust_commands(self.spec, master_port=port, python=self.python):
                proc = ManagedProcess(name, argv, log_path=self.work_dir / f"{name}.log", env=env,
                                      cwd=str(self.work_dir))
                self._procs.append(proc)
                proc.start()
                self._seen_pids.add(proc.pid)
            self._started_at = time.monotonic()
        except BaseException:
            # `with` runs no __exit__ when __enter__ raises: clean up here.
            self._reap()
            if self._own_dir:
                reaper.remove_dir(self.work_dir)
            raise
        return self

    @property
    def summary_dir(self) -> Path:
        """Where each Locust process writes ``summary.<role>.<pid>.json`` when it quits."""
        if self.work_dir is None:
            raise RuntimeError("the LoadRun is not started")
        return self.work_dir / "summaries"

    def is_running(self) -> bool:
        """Whether any Locust process of this run is still alive."""
        return any(p.is_running() for p in self._procs)

    def pids(self) -> list[int]:
        """Every process of this run now alive (leaders and the workers they forked), for leak checks."""
        import psutil

        out: list[int] = []
        for p in self._procs:
            if not p.is_running():
                continue
            out.append(p.pid)
            with contextlib.suppress(psutil.Error):
                out.extend(c.pid for c in psutil.Process(p.pid).children(recursive=True))
        self._seen_pids.update(out)
        return out

    @property
    def seen_pids(self) -> frozenset[int]:
        """Every pid `pids()` ever returned (for checking that all of them are gone)."""
        return frozenset(self._seen_pids)

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait until Locust stops by itself (at most `timeout`, default ``spec.deadline_s`` from start).

        If it is still running at the deadline it is stopped as by `stop()`; the result then
        says so in its ``log_tail``.
        """
        if self._result is not None:
            return self._result
        if self._started_at is None:
            raise RuntimeError("the LoadRun is not started: call start() or use it as a context manager")
        limit = self.spec.deadline_s if timeout is None else timeout
        deadline = (self._started_at if timeout is None else time.monotonic()) + limit
        leader = self._procs[0]
        while leader.is_running() and time.monotonic() < deadline:
            self.pids()  # remember forked workers while they live
            time.sleep(0.1)
        overran = leader.is_running()
        return self._finish(note=f"Locust was still running after {limit:.0f} s and was stopped" if overran else "")

    def stop(self) -> LoadResult:
        """End the run now (or return the result if it already ended)."""
        if self._result is not None:
            return self._result
        return self._finish(note="")

    def _finish(self, note: str) -> LoadResult:
        leader = self._procs[0] if self._procs else None
        if leader is not None and leader.is_running():
            self.pids()
            # SIGTERM to the master alone: it tells the workers to quit and gathers their last stats.
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader.pid, signal.SIGTERM)
        # Workers quit when the master tells them, after their in-flight submits (stop timeout).
        deadline = time.monotonic() + self.spec.stop_timeout_s + self.grace_s
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        exit_code = leader.returncode() if leader is not None else None
        self._reap()
        self._result = self._parse(exit_code, note)
        return self._result

    def _reap(self) -> None:
        # Workers first, then the master; each: SIGTERM to its group, SIGKILL after the grace period.
        for p in reversed(self._procs):
            p.stop(timeout=self.grace_s)

    def _parse(self, exit_code: int | None, note: str) -> LoadResult:
        tail = self.log_tail()
        if note:
            tail = f"{note}\n{tail}"
        summaries = []
        for path in sorted(self.summary_dir.glob("summary.*.json")) if self.summary_dir.is_dir() else ():
            try:
                summaries.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # a process killed while writing: its rename never happened, so this is rare
        if not summaries:
            # No Locust process got as far as quitting: it failed to start, crashed or was killed.
            return LoadResult(complete=False, exit_code=exit_code, log_tail=tail)
        return load_result_from_summaries(summaries, exit_code=exit_code, log_tail=tail)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every Locust process's log (master first)."""
        if self.work_dir is None:
            return ""
        parts = [f"--- {p.name} ---\n{log_tail(p.log_path, lines)}" for p in self._procs]
        return "\n".join(parts)

    def close(self) -> None:
        """Stop the run if needed and remove the work directory we created."""
        try:
            if self._procs and self._result is None:
                self.stop()
            else:
                self._reap()
        finally:
            if self._own_dir and self.work_dir is not None:
                reaper.remove_dir(self.work_dir)

    def __enter__(self) -> LoadRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_load(spec: LoadSpec, target: LoadTarget, *, work_dir: str | Path | None = None) -> LoadResult:
    """Run `spec` against `target` to the end and return its result; LoadError when Locust gave none.

    Example: ``run_load(LoadSpec("loadtests/locustfile.py", users=4, rate_per_s=20, run_time_s=10),
    LoadTarget.from_urls(stack.urls, run_id="r1"))``.
    """
    with LoadRun(spec, target, work_dir=work_dir) as run:
        result = run.wait()
    if not result.complete:
        raise LoadError(
            f"Locust exited (code {result.exit_code}) without writing its statistics: it failed to start or "
            f"crashed. Check the locustfile ({spec.locustfile}) runs with `locust -f ... --headless -t 2s`.\n"
            f"{result.log_tail}"
        )
    return result
