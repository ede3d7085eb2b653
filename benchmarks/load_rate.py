"""Publish rate of one Locust process with the Celery user against a raw kombu publish loop.

Target: the Locust process's rate >= 0.8 x the raw loop's, so the load generator is not what
limits a run.

One run against the embedded local stack (RabbitMQ, Redis, fault proxy). Both sides publish the
same message: the sample system's ``notifications.notify`` task in Celery's protocol 2 (the raw
loop publishes a message built once by Celery's own ``create_task_message``, with a fresh id
each time), json, persistent, to the same exchange and routing key, each message waiting for its
publisher confirm (the sample system's ``confirm_publish=True``). No history is recorded
(benchmarks/instrumentation_overhead.py measures that). The producer sends no "task-sent"
monitoring event (the sample system's ``send_events`` makes Celery publish one more message, with
its own confirm, per task), so both sides publish exactly one message per task;
``--sent-events`` keeps them, to see what they cost.

Two Locust figures, both from one Locust process:

- ``Locust, N users`` (the target): the process as a load generator is used, N users (default
  4) sharing one producer pool, each with one message in flight.
- ``Locust, 1 user``: one message in flight, like the raw loop: the per-message cost of gevent's
  cooperative sockets and of Celery's client, shown for information.

Machines shared with other work make back-to-back phases incomparable (the same loop can run at
half speed a minute later), so the sides take turns in short windows within one run: the Locust
process stays up, and a gate file says how many of its users may publish (0 while the raw loop
runs). Locust's rates count only the whole seconds inside their windows (from its per-second
statistics). Both paths are measured: directly to the broker and through the producer's proxy.

Usage::

    .venv/bin/python benchmarks/load_rate.py [--users 4] [--cycles 6] [--window 3] [--path direct|proxy|both]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.load import LoadRun, LoadSpec, LoadTarget  # noqa: E402
from harness.load.soak import queue_depths  # noqa: E402
from harness.stack.base import Role  # noqa: E402
from harness.stack.local import LocalStack  # noqa: E402
from sample_system import Settings, make_app  # noqa: E402

TASK = "notifications.notify"
TARGET_RATIO = 0.8

# The sample locustfile's user, gated: user number i publishes only while the gate file holds a
# number > i. Reading the gate costs one small file read between publishes; a gated-off user
# sleeps in its wait time.
GATED_LOCUSTFILE = """
import itertools, sys
sys.path.insert(0, {loadtests!r})
from locustfile import SampleSystemUser

GATE = {gate!r}
_numbers = itertools.count()


class GatedSampleUser(SampleSystemUser):
    def on_start(self):
        super().on_start()
        self.number = next(_numbers)

    def wait_time(self):
        with open(GATE) as fh:
            allowed = int(fh.read().strip() or 0)
        return super().wait_time() if self.number < allowed else 0.02


del SampleSystemUser
"""


def declare_and_purge(app: Any) -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3, timeout=10)
        with conn.channel() as ch:
            for q in app.conf.task_queues:
                bound = q(ch)
                bound.declare()
                bound.purge()


class RawLoop:
    """Publishes Celery-shaped messages back to back, each waiting for its publisher confirm."""

    def __init__(self, app: Any, broker_url: str) -> None:
        from kombu import Connection, Exchange, Producer

        self.template = app.amqp.create_task_message(
            str(uuid.uuid4()), TASK, ("user-bench", "Your weekly security digest is ready"), {"key": "bench"},
        )
        queue = app.amqp.router.route({}, TASK, (), {}, None)["queue"]
        self.routing_key = queue.routing_key
        exchange = Exchange(queue.exchange.name, type=queue.exchange.type, durable=queue.exchange.durable)
        self.conn = Connection(broker_url, transport_options={"confirm_publish": True}, connect_timeout=10)
        self.conn.ensure_connection(max_retries=3, timeout=10)
        self.producer = Producer(self.conn.channel(), exchange=exchange, auto_declare=False)

    def run_for(self, seconds: float) -> tuple[int, float]:
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            task_id = str(uuid.uuid4())
            self.producer.publish(
                self.template.body, routing_key=self.routing_key, serializer="json",
                headers=dict(self.template.headers, id=task_id, root_id=task_id), correlation_id=task_id,
                reply_to=self.template.properties.get("reply_to"), delivery_mode=2,
            )
            count += 1
        return count, time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, users: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(users))
        tmp.replace(self.path)  # atomic: a reader never sees an empty file


def whole_seconds(windows: list[tuple[float, float]]) -> list[int]:
    """The unix seconds lying entirely inside one of `windows`."""
    return [s for a, b in windows for s in range(int(a) + 1, int(b)) if s + 1 <= b]


def measure(app: Any, broker: str, backend: str, depth: Callable[[], int], *, users: int, cycles: int,
            window: float, work: Path, sent_events: bool) -> dict[str, Any]:
    gate = Gate(work / "gate")
    locustfile = work / "gated_locustfile.py"
    locustfile.write_text(GATED_LOCUSTFILE.format(loadtests=str(REPO / "loadtests"), gate=str(gate.path)))
    target = LoadTarget(broker_url=broker, backend_url=backend, run_id="bench", kinds=("notification",))
    spec = LoadSpec(str(locustfile), users=users, run_time_s=cycles * 4 * (window + 0.5) + 120, loglevel="WARNING",
                    env={"SAMPLE_SEND_EVENTS": "true" if sent_events else "false"})
    raw = RawLoop(app, broker)
    raw_count, raw_time = 0, 0.0
    windows: dict[int, list[tuple[float, float]]] = {1: [], users: []}
    with LoadRun(spec, target, work_dir=work / "locust") as run:
        raw.run_for(1.0)                                   # warm-up while Locust starts
        _wait_first_publish(run, gate, users, depth)
        for _ in range(cycles):
            for n in (1, users):
                gate.set(n)
                t0 = time.time()
                time.sleep(window)
                gate.set(0)
                windows[n].append((t0, time.time()))
                time.sleep(0.3)                            # let the users finish and pause
                count, elapsed = raw.run_for(window)
                raw_count += count
                raw_time += elapsed
        result = run.stop()
    raw.close()
    if not result.complete or result.failures:
        raise SystemExit(f"the Locust run failed ({result.failures} failed publishes):\n{result.log_tail}")
    per_second = {sec: n for sec, n, _ in result.per_second}
    raw_rate = raw_count / raw_time if raw_time else 0.0
    row: dict[str, Any] = {"kombu_rate": raw_rate, "kombu_messages": raw_count}
    for n, label in ((1, "locust_1"), (users, "locust_n")):
        seconds = whole_seconds(windows[n])
        count = sum(per_second.get(s, 0) for s in seconds)
        rate = count / len(seconds) if seconds else 0.0
        row.update({f"{label}_rate": rate, f"{label}_messages": count, f"{label}_seconds": len(seconds),
                    f"{label}_ratio": rate / raw_rate if raw_rate else 0.0})
    return row


def _wait_first_publish(run: LoadRun, gate: Gate, users: int, depth: Callable[[], int],
                        timeout: float = 120.0) -> None:
    """Open the gate until Locust's users have published (imports and connections done), then close it."""
    gate.set(users)
    deadline = time.monotonic() + timeout
    while depth() == 0:
        if not run.is_running():
            raise SystemExit(f"Locust exited before publishing:\n{run.log_tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"Locust did not start publishing within {timeout:.0f} s:\n{run.log_tail()}")
        time.sleep(0.2)
    time.sleep(1.5)
    gate.set(0)
    time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4, help="Locust users for the process's rate (default 4)")
    ap.add_argument("--cycles", type=int, default=6, help="turns each side takes (default 6)")
    ap.add_argument("--window", type=float, default=3.0, help="seconds per turn (default 3)")
    ap.add_argument("--path", choices=("direct", "proxy", "both"), default="both",
                    help="publish to the broker directly, through the producer proxy, or both (default)")
    ap.add_argument("--sent-events", action="store_true",
                    help="let the Celery producer also publish its task-sent events (the sample default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    if args.cycles < 1 or args.window < 2 or args.users < 2:
        ap.error("--cycles must be >= 1, --window >= 2 seconds (Locust counts whole seconds), --users >= 2")

    rows: list[dict[str, Any]] = []
    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="chaos-load-bench-") as tmp:
        urls = stack.urls
        paths = {"direct": (urls.broker_url, urls.backend_url),
                 "proxy": (urls.url_for(Role.PRODUCER_BROKER), urls.url_for(Role.PRODUCER_BACKEND))}

        def depth() -> int:
            return queue_depths(urls.broker_url, ["notifications"])["notifications"] or 0

        for name in (["direct", "proxy"] if args.path == "both" else [args.path]):
            broker, backend = paths[name]
            app = make_app(Settings(broker_url=broker, backend_url=backend))
            declare_and_purge(app)
            work = Path(tmp) / name
            work.mkdir()
            row = measure(app, broker, backend, depth, users=args.users, cycles=args.cycles, window=args.window,
                          work=work, sent_events=args.sent_events)
            declare_and_purge(app)
            app.close()
            rows.append({"path": name, **row})

    ok = all(r["locust_n_ratio"] >= TARGET_RATIO for r in rows)
    if args.json:
        print(json.dumps({"benchmark": "load_rate", "target_ratio": TARGET_RATIO, "users": args.users, "ok": ok,
                          "rows": rows}))
        return 0
    print(f"load_rate: one Locust process (CeleryUser, {TASK}) vs a raw kombu loop; json, persistent, each "
          f"message confirmed; {args.cycles} alternating turns of {args.window:g} s; task-sent events "
          f"{'on' if args.sent_events else 'off'}")
    for r in rows:
        print(f"  {r['path']:6}  raw kombu loop {r['kombu_rate']:7.1f} msg/s (n={r['kombu_messages']})")
        print(f"          Locust, {args.users} users {r['locust_n_rate']:7.1f} msg/s (n={r['locust_n_messages']}) "
              f"ratio {r['locust_n_ratio']:.2f} {'>=' if r['locust_n_ratio'] >= TARGET_RATIO else '<'} "
              f"{TARGET_RATIO}")
        print(f"          Locust, 1 user  {r['locust_1_rate']:7.1f} msg/s (n={r['locust_1_messages']}) "
              f"ratio {r['locust_1_ratio']:.2f} (one message in flight, like the loop; information)")
    print(f"result: {'OK' if ok else 'BELOW TARGET'} (target: Locust process ratio >= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
