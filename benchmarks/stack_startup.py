"""Print time to ready of each server, of the whole local stack with two workers, and per-test cost.

Run: .venv/bin/python benchmarks/stack_startup.py [--containers]
Target (issue 2): whole stack with two workers ready in <= 8 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.stack.base import Role  # noqa: E402
from harness.stack.local import LocalStack  # noqa: E402
from harness.workers import WorkerProcess, WorkerSpec  # noqa: E402

TARGET_S = 8.0


def measure_local() -> dict[str, float]:
    t0 = time.monotonic()
    stack = LocalStack()
    with stack:
        t_stack = time.monotonic() - t0
        urls = stack.urls
        specs = [WorkerSpec(app="harness.smoke:app", concurrency=1, hostname=f"bench{i}@127.0.0.1") for i in (1, 2)]
        workers = [WorkerProcess(s, broker_url=urls.url_for(Role.WORKER_BROKER),
                                 backend_url=urls.url_for(Role.WORKER_BACKEND)) for s in specs]
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda w: w.start(), workers))
            t_all = time.monotonic() - t0
            # Per-test cost with a session-reused stack: a task round trip on the running workers.
            from celery import Celery

            client = Celery("bench", broker=urls.url_for(Role.PRODUCER_BROKER), backend=urls.url_for(Role.PRODUCER_BACKEND))
            t1 = time.monotonic()
            for _ in range(20):
                client.send_task("chaos.smoke.echo", args=["x"]).get(timeout=10)
            per_task = (time.monotonic() - t1) / 20
            client.close()
        finally:
            for w in workers:
                w.stop()
        timings = dict(stack.timings)
    return {"proxy": timings["toxiproxy"], "backend": timings["backend"], "broker": timings["broker"],
            "stack": t_stack, "stack_with_2_workers": t_all, "per_test_round_trip": per_task}


def measure_containers() -> dict[str, float] | None:
    try:
        from harness.stack.containers import ContainerStack  # type: ignore[import-not-found]
    except ImportError:
        return None
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return None
    t0 = time.monotonic()
    with ContainerStack():
        return {"stack": time.monotonic() - t0}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", action="store_true", help="also measure the containers provider")
    args = ap.parse_args()
    local = measure_local()
    print("local stack start-up (seconds to ready, measured in one run):")
    for k, v in local.items():
        print(f"  {k:24} {v:7.3f}")
    print(f"  target: stack with 2 workers <= {TARGET_S} s -> ratio {local['stack_with_2_workers'] / TARGET_S:.2f} "
          f"({'met' if local['stack_with_2_workers'] <= TARGET_S else 'NOT met'})")
    if args.containers:
        c = measure_containers()
        if c is None:
            print("containers provider: not measured (no Docker, or provider unavailable)")
        else:
            print(f"containers provider: stack ready in {c['stack']:.3f} s "
                  f"(local {local['stack']:.3f} s, ratio {c['stack'] / local['stack']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
