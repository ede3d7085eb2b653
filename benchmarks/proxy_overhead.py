"""Proxy overhead: the built-in Toxiproxy against direct connections (and a real Toxiproxy if present).

Targets (printed, never asserted):
  * Celery end-to-end throughput through the proxy >= 0.85 x direct (acks_late, prefetch 1,
    prefork -c 2, 2,000 tasks), and never below a real Toxiproxy measured the same way;
  * raw TCP bulk throughput through the proxy >= 400 MB/s;
  * round-trip latency added to a 64-byte echo <= 0.15 ms at p50;
  * 1,000 concurrent connections through one proxy with no errors;
  * a client that stops reading grows the proxy by no more than a few MiB.

What runs: upstream test servers (echo, sink, flood) in a child process, the built-in server as
a child process (``harness.toxiproxy.process.ToxiproxyProcess``), and for the Celery part a
private local RabbitMQ + Redis (``harness.stack.local.LocalStack`` with its built-in proxy) and
a real ``celery worker`` subprocess. A real ``toxiproxy-server`` is measured too when it is on
PATH or given with ``--real-url``. Celery rounds alternate direct/proxied so drift hits both.

Before/after in one run: the built-in server runs on uvloop by default; the same server on the
stdlib asyncio loop (``CHAOS_TOXIPROXY_LOOP=asyncio``, how it ran before) is measured beside it
as ``builtin_asyncio`` (skip it with ``--no-asyncio-baseline``). ``--variant NAME:LOOP:NICE``
adds more built-in servers to compare, e.g. ``--variant nice10:uvloop:-10``. Besides the ratio
of medians, each proxied mode gets the median of its per-round ratios to the direct round of the
same pass over the modes (``*_paired_ratio``), which drifting machine load disturbs less.

Usage::

    .venv/bin/python benchmarks/proxy_overhead.py [--tasks 2000] [--rounds 5] [--skip-celery]
                                                  [--bulk-mib 1024] [--real-url http://127.0.0.1:8474]
                                                  [--no-asyncio-baseline] [--variant NAME:LOOP:NICE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _worker import BenchWorker  # noqa: E402

from harness.toxiproxy.__main__ import LOOP_ENV, NICE_ENV  # noqa: E402
from harness.toxiproxy.client import ToxiproxyClient  # noqa: E402
from harness.toxiproxy.process import ToxiproxyProcess, free_port  # noqa: E402

MB = 1_000_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- upstream servers (child process) -----------------------------------------------------------


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)  # type: ignore[attr-defined]


class _Flood(asyncio.Protocol):
    """Writes as fast as the peer accepts, honouring back-pressure."""

    block = b"f" * 65536

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.paused = False
        self._fill()

    def _fill(self) -> None:
        while not self.paused and not self.t.is_closing():
            self.t.write(self.block)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        asyncio.get_running_loop().call_soon(self._fill)


def _sink_conn(c: socket.socket) -> None:
    """Read an 8-byte length, then that many bytes, then answer b"K"."""
    with c:
        head = b""
        while len(head) < 8:
            piece = c.recv(8 - len(head))
            if not piece:
                return
            head += piece
        want = int.from_bytes(head, "big")
        buf = bytearray(1 << 20)
        got = 0
        while got < want:
            n = c.recv_into(buf)
            if not n:
                return
            got += n
        c.sendall(b"K")


def _sink_accept(srv: socket.socket) -> None:
    while True:
        c, _ = srv.accept()
        threading.Thread(target=_sink_conn, args=(c,), daemon=True).start()


def serve_upstreams() -> None:
    raise_fd_limit()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        echo = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=4096)
        flood = await loop.create_server(_Flood, "127.0.0.1", 0, backlog=64)
        sink = socket.socket()
        sink.bind(("127.0.0.1", 0))
        sink.listen(64)
        threading.Thread(target=_sink_accept, args=(sink,), daemon=True).start()
        ports = {"echo": echo.sockets[0].getsockname()[1], "flood": flood.sockets[0].getsockname()[1],
                 "sink": sink.getsockname()[1]}
        print(json.dumps(ports), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin

    asyncio.run(main())


@contextlib.contextmanager
def upstreams() -> Iterator[dict[str, int]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-upstreams"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("upstream test servers did not start")
        yield json.loads(line)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --- raw TCP measurements -----------------------------------------------------------------------


def bulk_mb_s(port: int, total: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        block = b"x" * (1 << 20)
        t0 = time.perf_counter()
        s.sendall(total.to_bytes(8, "big"))
        sent = 0
        while sent < total:
            n = min(len(block), total - sent)
            s.sendall(block[:n] if n < len(block) else block)
            sent += n
        if s.recv(1) != b"K":
            raise RuntimeError("sink did not acknowledge the bulk transfer")
        return total / (time.perf_counter() - t0) / MB


def echo_rtts(port: int, n: int) -> list[float]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"p" * 64
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < 64:
                piece = s.recv(64 - got)
                if not piece:
                    raise RuntimeError("echo connection closed")
                got += len(piece)
            out.append(time.perf_counter() - t0)
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _concurrent(port: int, n: int) -> dict[str, Any]:
    errors: list[str] = []
    opened = asyncio.Event()
    count = 0
    release = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal count
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        except Exception as e:  # noqa: BLE001 - counted, reported
            errors.append(f"connect: {type(e).__name__}: {e}")
            return
        try:
            msg = f"conn-{i:05d}".encode()
            writer.write(msg)
            if await asyncio.wait_for(reader.readexactly(len(msg)), 30) != msg:
                errors.append("wrong echo")
            count += 1
            if count == n:
                opened.set()
            await release.wait()  # hold every connection open at the same time
            writer.write(msg)
            if await asyncio.wait_for(reader.readexactly(len(msg)), 30) != msg:
                errors.append("wrong echo (second round)")
        except Exception as e:  # noqa: BLE001
            errors.append(f"io: {type(e).__name__}: {e}")
        finally:
            writer.close()

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(opened.wait(), 60)
    t_open = time.perf_counter() - t0
    held = count
    rss_held = _HELD_RSS_HOOK()
    release.set()
    await asyncio.gather(*tasks)
    return {"connections": n, "held_open_at_once": held, "errors": len(errors), "first_errors": errors[:3],
            "seconds_to_open_and_echo_all": round(t_open, 3), "proxy_rss_mib_while_held": rss_held}


_HELD_RSS_HOOK: Any = lambda: None  # noqa: E731 - set by measure_raw to read the proxy's RSS


def rss_mib(pid: int) -> float:
    try:
        import psutil

        return round(psutil.Process(pid).memory_info().rss / (1 << 20), 2)
    except Exception:  # noqa: BLE001
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 2)
    return float("nan")


def slow_reader_growth(port: int, pid: int, seconds: float = 3.0) -> dict[str, float]:
    """A client that connects to a flooding upstream and never reads."""
    before = rss_mib(pid)
    peak = before
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
            peak = max(peak, rss_mib(pid))
    return {"rss_before_mib": before, "rss_peak_mib": peak, "growth_mib": round(peak - before, 2)}


def measure_raw(ports: dict[str, int], proxy_url: str, pid: int | None, bulk_total: int,
                label: str) -> dict[str, Any]:
    global _HELD_RSS_HOOK
    client = ToxiproxyClient(proxy_url)
    tag = uuid.uuid4().hex[:6]
    names = {k: f"bench-{tag}-{k}" for k in ("echo", "sink", "flood")}
    proxied = {k: client.create_proxy(names[k], f"127.0.0.1:{ports[k]}").listen_port for k in names}
    try:
        out: dict[str, Any] = {"server": label}
        bulk = [bulk_mb_s(proxied["sink"], bulk_total) for _ in range(3)]
        out["bulk_mb_s"] = round(statistics.median(bulk), 1)
        echo_rtts(proxied["echo"], 500)  # warm up
        rtts = echo_rtts(proxied["echo"], 5000)
        out["echo_rtt_p50_ms"] = round(pct(rtts, 0.5) * 1000, 4)
        out["echo_rtt_p99_ms"] = round(pct(rtts, 0.99) * 1000, 4)
        if pid is not None:
            _HELD_RSS_HOOK = lambda: rss_mib(pid)  # noqa: E731
            out["proxy_rss_mib_idle"] = rss_mib(pid)
        out["concurrent"] = asyncio.run(_concurrent(proxied["echo"], 1000))
        if pid is not None:
            out["slow_reader"] = slow_reader_growth(proxied["flood"], pid)
        return out
    finally:
        for name in names.values():
            with contextlib.suppress(Exception):
                client.delete_proxy(name)


def measure_direct(ports: dict[str, int], bulk_total: int) -> dict[str, Any]:
    bulk = [bulk_mb_s(ports["sink"], bulk_total) for _ in range(3)]
    echo_rtts(ports["echo"], 500)
    rtts = echo_rtts(ports["echo"], 5000)
    return {"server": "direct", "bulk_mb_s": round(statistics.median(bulk), 1),
            "echo_rtt_p50_ms": round(pct(rtts, 0.5) * 1000, 4), "echo_rtt_p99_ms": round(pct(rtts, 0.99) * 1000, 4)}


# --- real Toxiproxy (optional) ------------------------------------------------------------------


@contextlib.contextmanager
def real_toxiproxy(url: str | None) -> Iterator[tuple[str, int | None] | None]:
    if url:
        ToxiproxyClient(url).wait_ready(10)
        yield url, None
        return
    binary = shutil.which("toxiproxy-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ToxiproxyClient(f"http://127.0.0.1:{port}").wait_ready(15)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --- Celery end to end --------------------------------------------------------------------------

APP_SOURCE = '''
import os
from celery import Celery

app = Celery("bench_proxy_app", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BACKEND"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_serializer="json",
                result_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
                task_default_queue=os.environ.get("BENCH_QUEUE", "bench_proxy"), worker_hijack_root_logger=False)


@app.task(name="bench.add")
def add(x, y):
    return x + y
'''


class Worker(BenchWorker):
    """`celery worker` (prefork -c 2, acks_late, prefetch 1) in its own process group."""

    def __init__(self, work: Path, broker: str, backend: str, queue: str, concurrency: int) -> None:
        env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{REPO}", BENCH_BROKER=broker, BENCH_BACKEND=backend,
                   BENCH_QUEUE=queue)
        super().__init__(["-A", "bench_proxy_app", "worker", "-P", "prefork", "-c", str(concurrency),
                          "--prefetch-multiplier", "1", "-Q", queue],
                         env=env, cwd=work, log=work / f"worker-{uuid.uuid4().hex[:6]}.log")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds `pid` has used so far (0.0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def celery_round(work: Path, urls: dict[str, str], tasks: int, concurrency: int, timeout: float,
                 proxy_pid: int | None = None) -> tuple[float, float]:
    """Tasks per second for `tasks` add() calls through `urls`, and the proxy's CPU ms per task."""
    sys.path.insert(0, str(work))
    os.environ["BENCH_BROKER"] = urls["producer_broker"]
    os.environ["BENCH_BACKEND"] = urls["producer_backend"]
    import importlib

    import bench_proxy_app  # type: ignore[import-not-found]

    importlib.reload(bench_proxy_app)
    queue = f"bench_proxy_{uuid.uuid4().hex[:8]}"
    app = bench_proxy_app.app
    app.conf.task_default_queue = queue
    worker = Worker(work, urls["worker_broker"], urls["worker_backend"], queue, concurrency)
    try:
        worker.wait_ready(app)
        add = bench_proxy_app.add
        add.apply_async((0, 0), queue=queue).get(timeout=60)  # warm the pool and connections
        t0 = time.perf_counter()
        cpu0 = cpu_seconds(proxy_pid)
        results = [add.apply_async((i, i), queue=queue) for i in range(tasks)]
        deadline = time.monotonic() + timeout
        for i, r in enumerate(results):
            if r.get(timeout=max(1.0, deadline - time.monotonic())) != 2 * i:
                raise RuntimeError(f"task {i} returned a wrong result")
        elapsed = time.perf_counter() - t0
        proxy_cpu_ms = (cpu_seconds(proxy_pid) - cpu0) * 1000 / tasks
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        app.close()
    return tasks / elapsed, proxy_cpu_ms


def _with_hostport(url: str, hostport: str) -> str:
    scheme, rest = url.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    _old, _, path = tail.partition("/")
    return f"{scheme}://{creds + '@' if creds else ''}{hostport}/{path}"


def measure_celery(tasks: int, rounds: int, concurrency: int, timeout: float,
                   servers: dict[str, str], pids: dict[str, int | None]) -> dict[str, Any]:
    """Median tasks/s per mode: direct, the stack's built-in proxy, and each of `servers` (mode -> API URL)."""
    from harness.stack.base import Role
    from harness.stack.local import LocalStack, LocalStackOptions

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-proxy-"))
    (work / "bench_proxy_app.py").write_text(APP_SOURCE)
    results: dict[str, list[float]] = {"direct": [], "builtin": [], **{m: [] for m in servers}}
    cpu: dict[str, list[float]] = {m: [] for m in results}
    created: list[tuple[ToxiproxyClient, str]] = []
    try:
        with LocalStack(LocalStackOptions(toxiproxy="builtin")) as stack:
            u = stack.urls
            servers_pids = set(stack.broker.pids if stack.broker else []) | set(stack.backend.pids if stack.backend else [])
            pids = {**pids, "builtin": next((p for p in stack.pids() if p not in servers_pids), None)}
            modes: dict[str, dict[str, str]] = {
                "direct": {"producer_broker": u.broker_url, "worker_broker": u.broker_url,
                           "producer_backend": u.backend_url, "worker_backend": u.backend_url},
                "builtin": {r.value: u.url_for(r) for r in Role},
            }
            try:
                for mode, api_url in servers.items():
                    client = ToxiproxyClient(api_url)
                    modes[mode] = {}
                    for role in Role:
                        direct = u.broker_url if role.is_broker else u.backend_url
                        upstream = urlsplit(direct).netloc.rpartition("@")[2]
                        name = f"bench-{uuid.uuid4().hex[:6]}-{role.value}"
                        p = client.create_proxy(name, upstream)
                        created.append((client, name))
                        modes[mode][role.value] = _with_hostport(direct, f"127.0.0.1:{p.listen_port}")
                order: list[str] = []
                for i in range(rounds):
                    names = list(modes)
                    order += names if i % 2 == 0 else names[::-1]
                for mode in order:
                    rate, cpu_ms = celery_round(work, modes[mode], tasks, concurrency, timeout, pids.get(mode))
                    results[mode].append(rate)
                    cpu[mode].append(cpu_ms)
                    log(f"  celery {mode:16s}: {rate:8.1f} tasks/s, proxy CPU {cpu_ms:.3f} ms/task")
            finally:
                for client, name in created:
                    with contextlib.suppress(Exception):
                        client.delete_proxy(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"tasks": tasks, "rounds": rounds, "pool": f"prefork -c {concurrency}",
                           "acks_late": True, "prefetch_multiplier": 1}
    for mode, rates in results.items():
        if rates:
            out[f"{mode}_tasks_per_s"] = round(statistics.median(rates), 1)
            out[f"{mode}_rounds"] = [round(r, 1) for r in rates]
            if mode != "direct" and pids.get(mode) is not None:
                out[f"{mode}_proxy_cpu_ms_per_task"] = round(statistics.median(cpu[mode]), 4)
    for mode in results:
        if mode != "direct" and f"{mode}_tasks_per_s" in out:
            out[f"{mode}_ratio"] = round(out[f"{mode}_tasks_per_s"] / out["direct_tasks_per_s"], 3)
            # Round i of every mode ran within one pass over the modes: pair it with that pass's
            # direct round, so a load swing between passes hits both sides of a ratio.
            pairs = [m / d for m, d in zip(results[mode], results["direct"], strict=False)]
            out[f"{mode}_paired_ratio"] = round(statistics.median(pairs), 3)
    return out


# --- main ---------------------------------------------------------------------------------------


def side_by_side(result: dict[str, Any]) -> list[str]:
    """One line per measure, every server's figure next to each other (ratios to direct)."""
    raw = result["raw_tcp"]
    servers = ["direct", "builtin"] + [k for k in raw if k not in ("direct", "builtin", "real")
                                       and isinstance(raw[k], dict)] + (["real"] if "real" in raw else [])
    lines = ["                        " + "".join(f"{k:>17s}" for k in servers)]
    lines.append("bulk MB/s               " + "".join(f"{raw[k]['bulk_mb_s']:17.1f}" for k in servers))
    lines.append("echo rtt p50 ms         " + "".join(f"{raw[k]['echo_rtt_p50_ms']:17.4f}" for k in servers))
    celery = result.get("celery")
    if celery:
        cols = [k for k in servers if f"{k}_tasks_per_s" in celery]
        lines.append("celery tasks/s (median) " + "".join(f"{celery[f'{k}_tasks_per_s']:17.1f}" for k in cols))
        lines.append("celery ratio of medians " + "".join(
            f"{celery[f'{k}_tasks_per_s'] / celery['direct_tasks_per_s']:17.3f}" for k in cols))
        lines.append("celery paired ratio     " + "".join(
            f"{celery.get(f'{k}_paired_ratio', 1.0):17.3f}" for k in cols))
        lines.append("proxy CPU ms per task   " + "".join(
            f"{celery.get(f'{k}_proxy_cpu_ms_per_task', float('nan')):17.4f}" for k in cols))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=2000, help="Celery tasks per round")
    p.add_argument("--rounds", type=int, default=5, help="Celery rounds per mode (alternating)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a Celery round may take")
    p.add_argument("--bulk-mib", type=int, default=1024, help="MiB per bulk transfer")
    p.add_argument("--skip-celery", action="store_true", help="only the raw TCP parts (no broker needed)")
    p.add_argument("--real-url", default=None, help="URL of a running real Toxiproxy to compare with")
    p.add_argument("--no-asyncio-baseline", action="store_true",
                   help="do not also measure the built-in server on the stdlib asyncio loop")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:LOOP:NICE",
                   help="another built-in server to measure, e.g. nice10:uvloop:-10 (repeatable)")
    p.add_argument("--serve-upstreams", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_upstreams:
        serve_upstreams()
        return 0
    if args.tasks < 1 or args.rounds < 1 or args.bulk_mib < 1:
        p.error("--tasks, --rounds and --bulk-mib must be >= 1")
    raise_fd_limit()
    bulk_total = args.bulk_mib * (1 << 20)
    result: dict[str, Any] = {"benchmark": "proxy_overhead", "cpus": os.cpu_count(),
                              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}

    with contextlib.ExitStack() as servers:
        real = servers.enter_context(real_toxiproxy(args.real_url))
        ports = servers.enter_context(upstreams())
        variants: dict[str, ToxiproxyProcess] = {}
        wanted = ([] if args.no_asyncio_baseline else ["builtin_asyncio:asyncio:0"]) + list(args.variant)
        for spec in wanted:
            name, loop_name, nice = (spec.split(":") + ["", ""])[:3]
            if not name or name in ("direct", "builtin", "real") or loop_name not in ("uvloop", "asyncio"):
                p.error(f"--variant {spec!r}: use NAME:LOOP:NICE with LOOP uvloop or asyncio")
            variants[name] = servers.enter_context(
                ToxiproxyProcess(env={**os.environ, LOOP_ENV: loop_name, NICE_ENV: nice}))
        log("raw TCP: direct")
        direct = measure_direct(ports, bulk_total)
        log(f"  {direct}")
        with ToxiproxyProcess() as tp:
            log("raw TCP: built-in proxy")
            builtin = measure_raw(ports, tp.url, tp.proc.pid if tp.proc else None, bulk_total, "builtin")
            log(f"  {builtin}")
        raw: dict[str, Any] = {"direct": direct, "builtin": builtin}
        for name, tpv in variants.items():
            log(f"raw TCP: built-in proxy variant {name}")
            raw[name] = measure_raw(ports, tpv.url, tpv.proc.pid if tpv.proc else None, bulk_total, name)
            log(f"  {raw[name]}")
        if real is not None:
            log("raw TCP: real Toxiproxy")
            raw["real"] = measure_raw(ports, real[0], real[1], bulk_total, "real")
            log(f"  {raw['real']}")
        added = builtin["echo_rtt_p50_ms"] - direct["echo_rtt_p50_ms"]
        targets: dict[str, Any] = {
            "bulk >= 400 MB/s": builtin["bulk_mb_s"] >= 400,
            "added p50 rtt <= 0.15 ms": added <= 0.15,
            "1000 connections, no errors": builtin["concurrent"]["errors"] == 0
            and builtin["concurrent"]["held_open_at_once"] == 1000,
            "slow reader growth <= 8 MiB": builtin["slow_reader"]["growth_mib"] <= 8,
        }
        if "real" in raw:
            targets["bulk builtin >= real"] = builtin["bulk_mb_s"] >= raw["real"]["bulk_mb_s"]
        result["raw_tcp"] = raw
        result["builtin_added_rtt_p50_ms"] = round(added, 4)
        if not args.skip_celery:
            log(f"celery: {args.tasks} tasks x {args.rounds} rounds per mode")
            extra = {name: tpv.url for name, tpv in variants.items()}
            if real is not None:
                extra["real"] = real[0]
            pids: dict[str, int | None] = {name: tpv.proc.pid if tpv.proc else None for name, tpv in variants.items()}
            if real is not None:
                pids["real"] = real[1]
            celery = measure_celery(args.tasks, args.rounds, args.concurrency, args.timeout, extra, pids)
            result["celery"] = celery
            targets["celery builtin/direct >= 0.85"] = celery["builtin_ratio"] >= 0.85
            if "real_ratio" in celery:
                targets["celery builtin >= real"] = celery["builtin_ratio"] >= celery["real_ratio"]
        result["real_toxiproxy"] = "measured" if real is not None else "not available (no toxiproxy-server on PATH)"
        result["side_by_side"] = side_by_side(result)
        result["targets_met"] = targets
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for line in result["side_by_side"]:
        log(line)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
