"""A local RabbitMQ cluster: three private nodes on loopback, their traffic to each other proxied.

Responsibility: start N `LocalRabbitMQ` nodes (own ports, data dirs, one cookie and one user),
form them into one cluster within a deadline, control each node (kill, stop, start, pause) and
the whole cluster as one broker (`ServerControl`), and tear everything down.

Inter-node traffic goes through the fault proxy. The nodes do not use epmd: each registers
with the cluster's name server (`harness.stack.epmd`) on a port of its own, and that port tells
it that a peer lives at the port of a proxy for that ordered pair (n1->n2, n2->n1, ...). A
partition of one node is then its four proxies disabled or blackholed, without root or
iptables; the nodes see exactly what a cut network shows them.

Formation (``formation``; measured on this 2-core box, see docs/cluster.md): ``classic`` (the
default) boots n1, the seed, without peer discovery, and once it answers AMQP boots the others
together, with classic-config discovery listing n1 only: they join it as part of their boot, and
no two nodes can each form a cluster of their own. ``join`` boots every node
standalone, then n2, n3 join n1 with one ``rabbitmqctl eval`` each (stop the app,
``join_cluster``, start it): 3-5 s slower (each CLI call boots a VM). Either way a node not in
n1's cluster after discovery is joined that way, and the cluster is checked before use.

Bounds for three VMs on 2 cores: one scheduler each (``+S 1:1``), no busy-waiting (the
single-node default), 8 async threads, a memory high watermark of `memory_mb` (absolute),
`cluster_partition_handling = pause_minority` (a partitioned node pauses itself: clients fail
over), `net_ticktime` seconds to notice a silent peer.

A scenario's own RabbitMQ configuration (`settings`, a `RabbitMQSettings`) goes to every node:
its ``rabbitmq.conf`` lines and application environment are in each node's files (a key of its
own replaces the cluster's default, e.g. ``cluster_partition_handling``; the peer discovery keys
are the cluster's), and its policies are set once, on the formed cluster (they live in the
cluster's shared database).

Example:
    >>> with LocalRabbitMQCluster() as cluster:          # doctest: +SKIP
    ...     cluster.url        # amqp://u:p@127.0.0.1:P1//;amqp://u:p@127.0.0.1:P2//;amqp://...
    ...     cluster.node("n2").kill(); cluster.start()     # node loss, then back
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, free_port
from harness.stack.rabbitmq import ClusterMembership, LocalRabbitMQ
from harness.stack.rabbitmq_config import RabbitMQSettings, apply_policies

_NODE = re.compile(r"([\w.-]+@[\w.-]+)")
#: (proxy name, upstream "host:port") -> (the proxy's name as created, its listen port)
ProxyFactory = Callable[[str, str], tuple[str, int]]


class LocalRabbitMQCluster:
    """N private RabbitMQ nodes formed into one cluster. Implements harness.stack.base.ServerControl
    for the cluster as a whole (kill/stop/start every node); `node(label)` controls one."""

    name = "rabbitmq-cluster"

    def __init__(self, *, size: int = 3, startup_timeout: float = 60.0, proxy: ProxyFactory | None = None,
                 memory_mb: int = 512, net_ticktime: int = 10, partition_handling: str = "pause_minority",
                 management: bool = False, formation: str = "classic",
                 settings: RabbitMQSettings | None = None) -> None:
        if not 2 <= size <= 5:
            raise ConfigError(f"a local cluster has 2 to 5 nodes, not {size}")
        if formation not in ("classic", "join"):
            raise ConfigError(f"formation must be 'classic' (peer discovery) or 'join' (join_cluster), not "
                              f"{formation!r}")
        if partition_handling not in ("pause_minority", "autoheal", "ignore"):
            raise ConfigError(f"partition_handling must be pause_minority, autoheal or ignore, not "
                              f"{partition_handling!r}")
        self.settings = settings or RabbitMQSettings()
        self.settings.check_for_cluster()
        self.startup_timeout = startup_timeout
        self.timings: dict[str, float] = {}
        self._formed = False
        self._policies_applied = False
        self.base_dir = Path(reaper.make_temp_dir("chaos-rabbitmq-cluster-"))
        self.base_dir.chmod(0o711)  # as root, the nodes run as the rabbitmq user: let them reach their dirs
        tag = secrets.token_hex(3)
        self.labels = tuple(f"n{i + 1}" for i in range(size))
        self._alive = {lb: f"chaos-{tag}-{lb}" for lb in self.labels}
        self._epmd_port = {lb: free_port() for lb in self.labels}
        user, password, cookie = f"chaos-{tag}", secrets.token_urlsafe(18), secrets.token_hex(16).upper()
        # Each VM gets one scheduler: three VMs with one per core each would fight over 2 cores.
        erl_args = f"+S 1:1 +SDio 2 +A 8 -kernel net_ticktime {int(net_ticktime)}"
        conf = {"cluster_partition_handling": partition_handling, "raft.wal_max_size_bytes": "32000000"}
        self.nodes: dict[str, LocalRabbitMQ] = {}
        try:
            self.formation = formation
            for lb in self.labels:
                discovery: dict[str, str] = {}
                if formation == "classic" and lb != self.labels[0]:
                    discovery = {"cluster_formation.peer_discovery_backend": "classic_config",
                                 "cluster_formation.classic_config.nodes.1": f"{self._alive[self.labels[0]]}@localhost",
                                 "cluster_formation.discovery_retry_limit": "120",
                                 "cluster_formation.discovery_retry_interval": "250"}
                member = ClusterMembership(node_name=f"{self._alive[lb]}@localhost", epmd_port=self._epmd_port[lb],
                                           user=user, password=password, cookie=cookie,
                                           extra_conf={**conf, **discovery}, erl_args=erl_args,
                                           memory_mb=int(memory_mb))
                # Every node checks and writes the scenario's conf; the policies are the cluster's.
                self.nodes[lb] = LocalRabbitMQ(startup_timeout=startup_timeout, management=management,
                                               base_dir=self.base_dir / lb, member=member,
                                               settings=self.settings.without_policies())
            #: (from, to) -> the fault proxy's name carrying from's traffic to `to`
            self.dist_proxies: dict[tuple[str, str], str] = {}
            views: dict[str, dict[str, int]] = {str(self._epmd_port[lb]): {} for lb in self.labels}
            if proxy is not None:
                for a in self.labels:
                    for b in self.labels:
                        if a != b:
                            name, port = proxy(f"dist_{a}_{b}", f"127.0.0.1:{self.nodes[b].config.dist_port}")
                            self.dist_proxies[(a, b)] = name
                            views[str(self._epmd_port[a])][self._alive[b]] = port
            views_file = self.base_dir / "epmd-views.json"
            views_file.write_text(json.dumps(views))
            root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            self._epmd = ManagedProcess("epmd-views", [sys.executable, "-m", "harness.stack.epmd",
                                                       "--config", str(views_file)],
                                        log_path=self.base_dir / "epmd-views.log", env=env)
        except BaseException:
            self.close()
            raise

    # -- nodes ---------------------------------------------------------------------------------
    def node(self, label: str) -> LocalRabbitMQ:
        """One node by label ("n1", "n2", ...); ConfigError naming the labels otherwise."""
        try:
            return self.nodes[label]
        except KeyError:
            raise ConfigError(f"no node {label!r} in this cluster: use one of {', '.join(self.labels)}") from None

    def node_name(self, label: str) -> str:
        return self.node(label).config.node_name

    def running_labels(self) -> list[str]:
        return [lb for lb in self.labels if self.nodes[lb].is_running()]

    # -- ServerControl and what LocalStack reads -------------------------------------------------
    @property
    def url(self) -> str:
        """Failover URL over every node (kombu tries them in order)."""
        return ";".join(self.nodes[lb].url for lb in self.labels)

    @property
    def address(self) -> str:
        return self.nodes[self.labels[0]].address

    def addresses(self) -> dict[str, str]:
        return {lb: self.nodes[lb].address for lb in self.labels}

    @property
    def pids(self) -> list[int]:
        out = [p for lb in self.labels for p in self.nodes[lb].pids]
        if self._epmd.is_running():
            out.append(self._epmd.pid)
        return out

    def is_running(self) -> bool:
        return all(n.is_running() for n in self.nodes.values())

    def spawn(self) -> None:
        """Launch the name server and every node that is not running, without waiting."""
        if not self._epmd.is_running():
            self._epmd.start()
            # The nodes register with it at boot: it must listen first (a fraction of a second).
            self._epmd.wait_ready(self._epmd_probe, timeout=self.startup_timeout, what="the epmd name server's ports")
        for lb in self.labels:
            if not self._formed and self.formation == "classic" and lb != self.labels[0]:
                continue  # blank nodes join the seed once it has booted (await_ready)
            if not self.nodes[lb].is_running():
                self.nodes[lb].spawn()

    def _epmd_probe(self) -> None:
        import socket

        for port in self._epmd_port.values():
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()

    def await_ready(self) -> None:
        """Wait until every node answers AMQP and all of them run as one cluster (one line on failure)."""
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        # A blank node that joins a seed still booting can copy its schema half-migrated (seen:
        # schema_integrity_check_failed, feature-flag columns of rabbit_user missing, 1 start in 7
        # with all three spawned at once): the seed boots first, then the others join it during
        # their own boot, in parallel.
        self.nodes[self.labels[0]].await_ready()
        self.timings["seed_ready"] = time.monotonic() - t0
        for lb in self.labels:
            if not self.nodes[lb].is_running():
                self.nodes[lb].spawn()
        # They boot in parallel: waiting for each in turn costs nothing, and a Ctrl-C lands at once.
        for lb in self.labels:
            self.nodes[lb].await_ready()
        self.timings["nodes_ready"] = time.monotonic() - t0
        self._form(deadline)
        self._formed = True
        self.timings["formed"] = time.monotonic() - t0
        if self.settings.policies and not self._policies_applied:
            # Once, on the formed cluster: a policy is cluster-wide (every node applies it).
            apply_policies(self.settings.policies, self.ctl)
            self._policies_applied = True
            self.timings["policies"] = time.monotonic() - t0

    def _form(self, deadline: float) -> None:
        """Join every node that is not yet a member to the first running one, then check."""
        seed = self.labels[0]
        members = self._members(seed, deadline)
        for lb in self.labels[1:]:
            if self.node_name(lb) in members:
                continue
            left = max(1.0, deadline - time.monotonic())
            # One CLI call per node (each costs a VM boot): stop the app, join, start it again.
            expr = (f"ok = rabbit:stop(), "
                    f"case rabbit_mnesia:join_cluster('{self.node_name(seed)}', disc) of "
                    f"ok -> ok; {{ok, already_member}} -> ok end, ok = rabbit:start().")
            try:
                self.nodes[lb].ctl("eval", expr, timeout=left)
            except HarnessError as exc:
                raise StackStartTimeout(f"the RabbitMQ cluster did not form: {lb} could not join {seed}: {exc}") \
                    from None
        members = self._members(seed, deadline)
        missing = [lb for lb in self.labels if self.node_name(lb) not in members]
        if missing:
            raise StackStartTimeout(f"the RabbitMQ cluster did not form within {self.startup_timeout:.0f} s: "
                                    f"{', '.join(missing)} not running in {seed}'s cluster "
                                    f"(logs under {self.base_dir})")

    def _members(self, label: str, deadline: float) -> set[str]:
        """The nodes `label` sees running in its cluster."""
        left = max(1.0, deadline - time.monotonic())
        try:
            out = self.nodes[label].ctl("eval", "io:format(\"~p~n\", [rabbit_nodes:all_running()]).", timeout=left)
        except HarnessError as exc:
            raise StackStartTimeout(f"the RabbitMQ cluster did not form: {label} did not answer: {exc}") from None
        return set(_NODE.findall(out))

    def members(self, label: str | None = None, timeout: float = 30.0) -> set[str]:
        """Labels of the nodes `label` (the first running node by default) sees running with it."""
        lb = label or next(iter(self.running_labels()), self.labels[0])
        names = self._members(lb, time.monotonic() + timeout)
        return {x for x in self.labels if self.node_name(x) in names}

    def await_members(self, timeout: float = 60.0) -> dict[str, object]:
        """Wait until every node runs in one cluster again (after a fault); HarnessError after `timeout`.

        Returns what was seen: the members and the seconds waited.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen: set[str] = set()
        # Each look is one rabbitmqctl call (~1 s): the loop is bounded by that as well as by time.
        for _ in range(int(timeout) + 1):
            lb = next(iter(self.running_labels()), None)
            if lb is not None:
                try:
                    seen = self.members(lb, timeout=max(1.0, min(15.0, deadline - time.monotonic())))
                except HarnessError:
                    seen = set()
                if seen == set(self.labels):
                    return {"members": sorted(seen), "rejoin_s": round(time.monotonic() - t0, 3)}
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        raise HarnessError(f"the RabbitMQ cluster did not re-form within {timeout:.0f} s: running together: "
                           f"{sorted(seen) or 'none'} of {', '.join(self.labels)} (logs under {self.base_dir})")

    def start(self) -> LocalRabbitMQCluster:
        """Start every node that is down (same ports and data) and wait for the whole cluster."""
        self.spawn()
        self.await_ready()
        return self

    def kill(self) -> None:
        """SIGKILL every node; data stays for start()."""
        for n in self.nodes.values():
            n.kill()

    def stop(self) -> None:
        """Stop every node gracefully (in parallel: each waits for no other)."""
        with ThreadPoolExecutor(len(self.labels)) as pool:
            list(pool.map(lambda n: n.stop(), self.nodes.values()))

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """`rabbitmqctl ARGS` against the first running node (cluster-wide settings such as alarms)."""
        lb = next(iter(self.running_labels()), self.labels[0])
        return self.nodes[lb].ctl(*args, timeout=timeout)

    def temp_dirs(self) -> list[str]:
        return [str(self.base_dir)]

    def close(self) -> None:
        """Stop every node and the name server; remove the cluster's directory."""
        nodes = list(getattr(self, "nodes", {}).values())
        try:
            if nodes:
                # In parallel: each clean stop takes 1-3 s. Each is bounded (SIGKILL after 15 s).
                with ThreadPoolExecutor(len(nodes)) as pool:
                    list(pool.map(lambda n: n.close(), nodes))
        finally:
            epmd = getattr(self, "_epmd", None)
            if epmd is not None:
                epmd.stop(timeout=5)
            reaper.remove_dir(self.base_dir)

    def __enter__(self) -> LocalRabbitMQCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
