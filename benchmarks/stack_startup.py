"""Print time to ready of each server, of the whole local stack with two workers, and per-test cost.

Two ways to start, side by side in one run:
  * sequential: the stack ready first, then two workers (`WorkerGroup.start`), as before;
  * overlapped: `LocalStack.boot` (proxies up, broker still booting), the workers spawned at once
    with `broker_wait` (they import their app during the broker's boot and start the moment it
    answers), then `LocalStack.await_ready` and `WorkerGroup.wait_ready`.

Run: .venv/bin/python benchmarks/stack_startup.py [--rounds 2] [--containers]
Target (issue 2, 16): whole stack with two workers ready in <= 8 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.stack.base import Role  # noqa: E402
from harness.stack.local import LocalStack  # noqa: E402
from harness.workers import WorkerGroup, WorkerSpec  # noqa: E402

TARGET_S = 8.0


def _specs() -> list[WorkerSpec]:
    return [WorkerSpec(app="harness.smoke:app", concurrency=1, hostname=f"bench{i}@127.0.0.1") for i in (1, 2)]


def measure_local(overlap: bool) -> dict[str, float]:
    t0 = time.monotonic()
    stack = LocalStack()
    group: WorkerGroup | None = None
    try:
        if overlap:
            urls = stack.boot()
            group = WorkerGroup(_specs(), broker_url=urls.url_for(Role.WORKER_BROKER),
                                backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url)
            group.spawn(broker_wait=stack.options.startup_timeout)
            stack.await_ready()
            t_stack = time.monotonic() - t0
            group.wait_ready()
        else:
            stack.start()
            t_stack = time.monotonic() - t0
            urls = stack.urls
            group = WorkerGroup(_specs(), broker_url=urls.url_for(Role.WORKER_BROKER),
                                backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url)
            group.start()
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
        if group is not None:
            group.stop()
        stack.stop()
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
    ap.add_argument("--rounds", type=int, default=2, help="starts of each kind, alternating (median printed)")
    ap.add_argument("--containers", action="store_true", help="also measure the containers provider")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    runs: dict[str, list[dict[str, float]]] = {"sequential": [], "overlapped": []}
    for i in range(args.rounds):
        for kind in (("sequential", "overlapped") if i % 2 == 0 else ("overlapped", "sequential")):
            runs[kind].append(measure_local(kind == "overlapped"))
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items()}
    print(f"local stack start-up (seconds to ready, median of {args.rounds} alternating rounds each):")
    print(f"  {'':24} {'sequential':>11} {'overlapped':>11}")
    for k in med["sequential"]:
        print(f"  {k:24} {med['sequential'][k]:11.3f} {med['overlapped'][k]:11.3f}")
    for kind in runs:
        print(f"  {kind:11} stack_with_2_workers per round: "
              + ", ".join(f"{r['stack_with_2_workers']:.2f}" for r in runs[kind]))
    best = med["overlapped"]["stack_with_2_workers"]
    print(f"  target: stack with 2 workers <= {TARGET_S} s -> overlapped ratio {best / TARGET_S:.2f} "
          f"({'met' if best <= TARGET_S else 'NOT met'}), sequential ratio "
          f"{med['sequential']['stack_with_2_workers'] / TARGET_S:.2f}")
    if args.containers:
        c = measure_containers()
        if c is None:
            print("containers provider: not measured (no Docker, or provider unavailable)")
        else:
            print(f"containers provider: stack ready in {c['stack']:.3f} s "
                  f"(local {med['sequential']['stack']:.3f} s, ratio {c['stack'] / med['sequential']['stack']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
