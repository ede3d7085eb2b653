"""Instrumentation overhead: sample-system throughput with history recording vs without, in one run.

Target (printed, never asserted): recorded throughput >= 0.9 x unrecorded throughput.

What runs: a private local RabbitMQ + Redis (``harness.stack.local.LocalStack``) and the sample
system's "event" workload (``events.publish`` fans out to ``notifications.welcome_user`` and
``payments.open_wallet``: three tasks and two effects per unit, no partner API), on real
``celery worker`` processes (prefork by default).

Both variants run *at the same time*, each with its own RabbitMQ vhost, Redis database, effect
store, worker and producer thread: A is plain ``celery`` with an uninstrumented producer; B is
``python -m harness.history.record_worker`` (CHAOS_HISTORY_DIR set) with a producer that called
``install``. Running them side by side exposes both to the same machine load, which on a
shared machine swings far more than the recording costs; sequential rounds would measure that
noise. (If B is slower it also leaves A more CPU, so the ratio errs on the pessimistic side.)
Each round starts fresh workers, publishes ``--units`` units to each side and waits until each
effect store holds all of its effects. Throughput is units per second from the first publish
to the last effect; worker start-up is excluded. The reported ratio is the median of the
per-round ratios B/A.

Usage::

    .venv/bin/python benchmarks/instrumentation_overhead.py [--units 300] [--rounds 3] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _worker import BenchWorker  # noqa: E402

from harness.history import install, read_history  # noqa: E402


class Worker(BenchWorker):
    """The sample system's worker (`module` is ``celery`` or the harness's recording wrapper)."""

    def __init__(self, module: str, env: dict[str, str], log: Path, pool: str, concurrency: int,
                 queues: list[str]) -> None:
        super().__init__(["-A", "sample_system", "worker", "-P", pool, "-c", str(concurrency), "-Q", ",".join(queues)],
                         env=env, cwd=REPO, log=log, module=module)

    def wait_ready(self, app: Any, timeout: float = 60.0) -> None:
        super().wait_ready(app, timeout)


def _effect_count(store: Any) -> int:
    import sqlalchemy as sa

    from sample_system.effects import effects_table

    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(effects_table)).scalar_one())


class Side:
    """One variant (recorded or not): its settings, app, workload, worker and measurement."""

    def __init__(self, recorded: bool, settings: Any, work: Path) -> None:
        from sample_system import make_app
        from sample_system.workload import SampleWorkload

        self.recorded = recorded
        self.settings = settings
        self.work = work
        self.app = make_app(settings)
        self.workload = SampleWorkload(settings, kinds=("event",))
        self.run_id = ""
        self.hdir = work
        self.seconds = 0.0
        self.history_ops = 0
        self.error: BaseException | None = None

    @property
    def label(self) -> str:
        return "recorded" if self.recorded else "unrecorded"

    def start_worker(self, pool: str, concurrency: int) -> Worker:
        from sample_system.topology import DLQ_QUEUE

        self.run_id = f"bench{uuid.uuid4().hex[:8]}"
        self.hdir = self.work / f"history-{self.run_id}"
        self.workload.setup(self.app)
        queues = [q.name for q in self.app.conf.task_queues if q.name != DLQ_QUEUE]
        env = dict(os.environ, PYTHONPATH=str(REPO), **self.settings.to_env())
        for var in ("CHAOS_HISTORY_DIR", "CHAOS_RUN_ID", "CHAOS_PROCESS_NAME"):
            env.pop(var, None)
        if self.recorded:
            env.update(CHAOS_HISTORY_DIR=str(self.hdir), CHAOS_RUN_ID=self.run_id)
        module = "harness.history.record_worker" if self.recorded else "celery"
        return Worker(module, env, self.work / f"worker-{self.run_id}.log", pool, concurrency, queues)

    def run(self, units: int, go: threading.Event, timeout: float) -> None:
        """Publish `units` units when `go` is set, then wait for all their effects (thread body)."""
        inst = install(self.app, self.hdir, self.run_id, process_name="producer-1") if self.recorded else None
        try:
            todo = self.workload.units(units, self.run_id)
            expected = 2 * units
            go.wait(timeout=60)
            t0 = time.monotonic()
            for unit in todo:
                self.workload.submit(self.app, unit)
            done = 0
            while time.monotonic() < t0 + timeout:
                done = _effect_count(self.workload.store)
                if done >= expected:
                    break
                time.sleep(0.05)
            self.seconds = time.monotonic() - t0
            if done < expected:
                raise TimeoutError(f"{self.label}: only {done}/{expected} effects after {timeout} s")
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            if inst is not None:
                inst.uninstall()

    def close(self) -> None:
        self.app.close()
        self.workload.store.dispose()


def one_round(sides: list[Side], *, units: int, pool: str, concurrency: int, timeout: float) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        workers = []
        for side in sides:
            w = side.start_worker(pool, concurrency)
            stack.callback(w.stop)
            workers.append(w)
        for side, w in zip(sides, workers, strict=True):
            w.wait_ready(side.app)
        go = threading.Event()
        threads = [threading.Thread(target=side.run, args=(units, go, timeout), name=side.label) for side in sides]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(timeout=timeout + 120)
    for side in sides:
        if side.error is not None:
            raise RuntimeError(f"{side.label} side failed: {side.error!r}") from side.error
        side.history_ops = len(read_history(side.hdir)) if side.recorded else 0
    by = {side.label: side for side in sides}
    a, b = by["unrecorded"], by["recorded"]
    return {
        "unrecorded_units_per_s": units / a.seconds,
        "recorded_units_per_s": units / b.seconds,
        "ratio": (units / b.seconds) / (units / a.seconds),
        "recorded_history_ops": b.history_ops,
    }


def _with_path(url: str, path: str) -> str:
    """`url` with its path replaced: the vhost of an AMQP URL, the database of a Redis URL.

    >>> _with_path("amqp://u:p@127.0.0.1:5672//", "bench-a")
    'amqp://u:p@127.0.0.1:5672/bench-a'
    """
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/{path}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=300, help="workload units per side per round (3 tasks each)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2, help="pool size of each of the two workers")
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take")
    args = p.parse_args(argv)
    if args.units < 1 or args.rounds < 1:
        p.error("--units and --rounds must be >= 1")

    from harness.stack.local import LocalStack
    from sample_system import Settings

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-instr-"))
    rounds: list[dict[str, Any]] = []
    try:
        with LocalStack() as stack:
            rabbit = stack.broker
            user = rabbit.config.user  # type: ignore[union-attr]
            sides = []
            for i, recorded in enumerate((False, True)):
                vhost = f"bench-{'b' if recorded else 'a'}"
                rabbit.ctl("add_vhost", vhost)  # type: ignore[union-attr]
                rabbit.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")  # type: ignore[union-attr]
                settings = Settings(
                    broker_url=_with_path(stack.urls.broker_url, vhost),
                    backend_url=_with_path(stack.urls.backend_url, str(i + 1)),
                    db_url=f"sqlite:///{work / f'effects-{vhost}.sqlite3'}", rate_limit=None,
                    concurrency=args.concurrency, send_events=False, max_tasks_per_child=None)
                sides.append(Side(recorded, settings, work))
            try:
                for r in range(args.rounds):
                    order = sides if r % 2 == 0 else sides[::-1]  # who publishes first alternates
                    res = one_round(order, units=args.units, pool=args.pool, concurrency=args.concurrency,
                                    timeout=args.timeout)
                    rounds.append(res)
                    print(f"  round {r + 1}: unrecorded {res['unrecorded_units_per_s']:7.1f} units/s, "
                          f"recorded {res['recorded_units_per_s']:7.1f} units/s, ratio {res['ratio']:.3f} "
                          f"({res['recorded_history_ops']} history ops)", file=sys.stderr)
            finally:
                for side in sides:
                    side.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {
        "benchmark": "instrumentation_overhead",
        "workload": "sample_system event fan-out (3 tasks, 2 effects per unit), both variants side by side",
        "pool": args.pool, "concurrency": args.concurrency, "units_per_round": args.units, "rounds": args.rounds,
        "unrecorded_units_per_s": round(statistics.median(r["unrecorded_units_per_s"] for r in rounds), 2),
        "recorded_units_per_s": round(statistics.median(r["recorded_units_per_s"] for r in rounds), 2),
        "ratio": round(ratio, 3), "target": ">= 0.9", "meets_target": ratio >= 0.9,
        "per_round": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rounds],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
