"""The three-node cluster stack leaves nothing (processes, listening ports, temp dirs) when its
owner is interrupted: SIGINT while the nodes boot, SIGTERM once the cluster runs, SIGKILL (the
reaper's case). Marked full and cluster: each case boots three RabbitMQ nodes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.full, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]

OWNER = r"""
import json, sys, time
from harness import interrupt
from harness.stack.local import LocalStack, LocalStackOptions
interrupt.install()
when = sys.argv[1]
stack = LocalStack(LocalStackOptions(topology="cluster"))
try:
    urls = stack.boot()
    c = stack.broker
    ports = [p for n in c.nodes.values() for p in (n.config.amqp_port, n.config.dist_port, n.config.epmd_port)]
    ports += [e.listen_port for eps in urls.node_proxies.values() for e in eps]
    def report():
        print(json.dumps({"pids": stack.pids(), "dirs": stack.temp_dirs(), "ports": ports}), flush=True)
    if when == "boot":
        report()
    stack.await_ready()
    if when != "boot":
        report()
    time.sleep(300)
finally:
    stack.stop()
"""


def _listening() -> set[int]:
    """Ports with a listening TCP socket (a closed listener's accepted connections may linger in
    TIME_WAIT on its port: that is not a leak)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A":
                out.add(int(f[1].rsplit(":", 1)[1], 16))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize(("when", "sig"), [("boot", signal.SIGINT), ("ready", signal.SIGTERM),
                                           ("ready", signal.SIGKILL)])
def test_an_interrupted_cluster_stack_leaves_nothing(tmp_path: Path, when: str, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHAOS_STATE_DIR": str(tmp_path / "state")}
    env.pop("CHAOS_REAPER_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", OWNER, when], env=env, stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout is not None
        seen = json.loads(proc.stdout.readline())
        # boot: the seed node, the name server, Redis, the proxy; ready: the three nodes too
        assert len(seen["pids"]) >= (4 if when == "boot" else 6) and all(_alive(p) for p in seen["pids"])
        assert all(os.path.isdir(d) for d in seen["dirs"])
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (any(_alive(p) for p in seen["pids"])
                                               or any(os.path.exists(d) for d in seen["dirs"])):
            time.sleep(0.1)
        assert [p for p in seen["pids"] if _alive(p)] == []
        assert [d for d in seen["dirs"] if os.path.exists(d)] == []
        assert sorted(set(seen["ports"]) & _listening()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
