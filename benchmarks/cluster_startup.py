"""Start and stop the local stack with a three-node RabbitMQ cluster N times; print the time to a
formed cluster (median) and check that each stop left nothing: no process, listening port or
temp dir of the stack.

Run: flock /tmp/chaos.lock .venv/bin/python benchmarks/cluster_startup.py [--rounds 3] [--formation join]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.stack.local import LocalStack, LocalStackOptions  # noqa: E402
from harness.stack.rabbitmq_cluster import LocalRabbitMQCluster  # noqa: E402


def _listening() -> set[int]:
    """Ports with a listening TCP socket (TIME_WAIT leftovers of closed connections are no leak)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A":
                out.add(int(f[1].rsplit(":", 1)[1], 16))
    return out


def _ports(stack: LocalStack) -> list[int]:
    cluster = stack.broker
    assert cluster is not None and hasattr(cluster, "nodes")
    ports = [p for n in cluster.nodes.values() for p in (n.config.amqp_port, n.config.dist_port, n.config.epmd_port)]
    ports += [ep.listen_port for eps in stack.urls.node_proxies.values() for ep in eps]
    ports += [ep.listen_port for ep in stack.urls.proxied.values()]
    ports.append(int(stack.urls.toxiproxy_url.rsplit(":", 1)[1]))
    return ports


def one_round(formation: str) -> dict[str, object]:
    if formation != "classic":
        return bare_cluster(formation)
    t0 = time.monotonic()
    stack = LocalStack(LocalStackOptions(topology="cluster"))
    try:
        stack.start()
        ready = time.monotonic() - t0
        members = sorted(stack.broker.members())  # type: ignore[union-attr]
        pids, ports, dirs = stack.pids(), _ports(stack), stack.temp_dirs()
        timings = {k: round(v, 2) for k, v in stack.timings.items()}
        cluster_timings = {k: round(v, 2) for k, v in stack.broker.timings.items()}  # type: ignore[union-attr]
    finally:
        t1 = time.monotonic()
        stack.stop()
        stop_s = time.monotonic() - t1
    return _after(ready, stop_s, members, timings, cluster_timings, pids, ports, dirs)


def bare_cluster(formation: str) -> dict[str, object]:
    """The cluster alone (no proxies), to compare formation methods."""
    t0 = time.monotonic()
    cluster = LocalRabbitMQCluster(formation=formation)
    try:
        cluster.start()
        ready = time.monotonic() - t0
        members = sorted(cluster.members())
        pids, dirs = cluster.pids, cluster.temp_dirs()
        ports = [p for n in cluster.nodes.values() for p in (n.config.amqp_port, n.config.dist_port,
                                                             n.config.epmd_port)]
        timings = {k: round(v, 2) for k, v in cluster.timings.items()}
    finally:
        t1 = time.monotonic()
        cluster.close()
        stop_s = time.monotonic() - t1
    return _after(ready, stop_s, members, {}, timings, pids, ports, dirs)


def _after(ready: float, stop_s: float, members: list[str], timings: dict[str, float],
           cluster_timings: dict[str, float], pids: list[int], ports: list[int], dirs: list[str]) -> dict[str, object]:
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    busy = sorted(set(ports) & _listening())
    left = [d for d in dirs if os.path.exists(d)]
    return {"ready_s": round(ready, 2), "stop_s": round(stop_s, 2), "members": members, "timings": timings,
            "cluster": cluster_timings, "pids": len(pids), "ports": len(ports), "left_pids": alive,
            "left_ports": busy, "left_dirs": left}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formation", default="classic", choices=("classic", "join"),
                    help="join: the bare cluster formed by join_cluster, for comparison")
    args = ap.parse_args()
    rounds = []
    for i in range(args.rounds):
        r = one_round(args.formation)
        print(json.dumps({"round": i + 1, **r}), flush=True)
        rounds.append(r)
    med = statistics.median(float(r["ready_s"]) for r in rounds)  # type: ignore[arg-type]
    leaks = [r for r in rounds if r["left_pids"] or r["left_ports"] or r["left_dirs"]]
    print(f"cluster stack ({args.formation}) ready: median {med:.2f} s of {args.rounds}; "
          f"leaks after stop: {'none' if not leaks else leaks}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
