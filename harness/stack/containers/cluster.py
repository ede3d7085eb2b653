"""A three-node RabbitMQ cluster as containers: `ContainerRabbitMQCluster` (the containers stack's
broker with ``ContainerStackOptions(topology="cluster")``).

Responsibility: the cluster as one broker (harness.stack.base.ServerControl over every node) and
what the cluster fault drivers (`harness.faults.drivers.cluster`) need of it: `node(label)` (a
`ContainerRabbitMQ`: docker kill/stop/start/pause), `node_name`, `members`, `await_members`, and
`isolate` / `reconnect` (a node's container cut from, then put back on, the cluster's own network).

How it runs (the stack creates the containers; `harness.stack.containers.stack`):

- three containers of the same RabbitMQ image, node names ``rabbit@rmq-n1`` … ``rabbit@rmq-n3``
  (``RABBITMQ_NODENAME``; not the containers' host names, which Docker's DNS answers on every
  network; each container maps its own name to 127.0.0.1), one Erlang cookie (``-setcookie`` in the VM's arguments; rabbitmqctl gets
  ``--erlang-cookie``), one user;
- each on the stack's network (clients, published AMQP port) *and* on the cluster's own internal
  network ``chaos-RUN-dist``, where alone its ``rmq-nX`` name resolves (a network alias): all inter-node traffic
  (epmd, distribution) crosses that network, so ``docker network disconnect`` of one node from
  it is a real partition of that node from its peers, with nothing else changed (its clients still
  reach it, as with the local cluster's proxies);
- formation: n1 (the seed) boots alone; once it answers AMQP, n2 and n3 boot together with
  classic-config peer discovery listing n1 only (the local cluster's ``classic``); a node not in
  n1's cluster after its boot is joined with one ``rabbitmqctl eval`` (stop the app,
  ``join_cluster``, start), and the whole start has a deadline;
- bounds per node: ``+S 1:1 +SDio 2 +A 8``, no scheduler busy-waiting, ``net_ticktime`` 10 s
  (in ``RABBITMQ_SERVER_ERL_ARGS``: chaos/rabbitmq:local's entrypoint overwrites
  ``RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS`` with ``-noinput``), a memory high watermark of
  `memory_mb` absolute, ``cluster_partition_handling = pause_minority``.

Example:
    >>> with ContainerStack(topology="cluster", images="local") as stack:      # doctest: +SKIP
    ...     stack.broker.node("n2").kill(); stack.broker.start()
    ...     stack.broker.isolate("n3"); stack.broker.reconnect("n3"); stack.broker.await_members()
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.stack.containers.servers import ContainerRabbitMQ
from harness.stack.rabbitmq_config import RabbitMQSettings, apply_policies

__all__ = ["ContainerRabbitMQCluster", "cluster_conf", "erl_args"]

_NODE = re.compile(r"([\w.-]+@[\w.-]+)")
LABELS = ("n1", "n2", "n3")


def host_name(label: str) -> str:
    """The host part of a node's Erlang name (``rabbit@`` this): its alias on the cluster network."""
    return f"rmq-{label}"


def erl_args(cookie: str, net_ticktime: int = 10) -> str:
    """``RABBITMQ_SERVER_ERL_ARGS`` of a node: RabbitMQ's defaults, no busy-waiting, one scheduler.

    Example:
        >>> erl_args("C").split()[-6:]
        ['8', '-kernel', 'net_ticktime', '10', '-setcookie', 'C']
    """
    return ("+P 1048576 +t 5000000 +stbt db +zdbbl 128000 +sbwt none +sbwtdcpu none +sbwtdio none "
            f"+S 1:1 +SDio 2 +A 8 -kernel net_ticktime {int(net_ticktime)} -setcookie {cookie}")


def cluster_conf(label: str, *, memory_mb: int = 512,
                 partition_handling: str = "pause_minority") -> dict[str, str]:
    """The cluster's own ``rabbitmq.conf`` settings for node `label` (a scenario's key replaces one).

    Example:
        >>> cluster_conf("n2")["cluster_formation.classic_config.nodes.1"]
        'rabbit@rmq-n1'
        >>> "cluster_formation.peer_discovery_backend" in cluster_conf("n1")
        False
    """
    conf = {"cluster_partition_handling": partition_handling,
            "vm_memory_high_watermark.absolute": f"{int(memory_mb)}MB",
            "raft.wal_max_size_bytes": "32000000"}
    if label != LABELS[0]:
        conf.update({"cluster_formation.peer_discovery_backend": "classic_config",
                     "cluster_formation.classic_config.nodes.1": f"rabbit@{host_name(LABELS[0])}",
                     "cluster_formation.discovery_retry_limit": "120",
                     "cluster_formation.discovery_retry_interval": "250"})
    return conf


class ContainerRabbitMQCluster:
    """Three RabbitMQ containers formed into one cluster. Implements harness.stack.base.ServerControl
    for the cluster as a whole; `node(label)` controls one node (a `ContainerRabbitMQ`)."""

    name = "rabbitmq-cluster"
    #: The local cluster's inter-node proxies; none here (the partition is `isolate`).
    dist_proxies: Mapping[tuple[str, str], str] = {}

    def __init__(self, nodes: Mapping[str, ContainerRabbitMQ], *, dist_network: Any, user: str, password: str,
                 startup_timeout: float, settings: RabbitMQSettings | None = None) -> None:
        self.nodes = dict(nodes)
        self.labels = tuple(self.nodes)
        self._dist = dist_network
        self.user, self.password = user, password
        self.startup_timeout = startup_timeout
        self.settings = settings or RabbitMQSettings()
        self.timings: dict[str, float] = {}
        self._started: set[str] = set()
        self._policies_applied = False

    # -- nodes ---------------------------------------------------------------------------------
    def node(self, label: str) -> ContainerRabbitMQ:
        """One node by label ("n1", "n2", "n3"); ConfigError naming the labels otherwise."""
        try:
            return self.nodes[label]
        except KeyError:
            raise ConfigError(f"no node {label!r} in this cluster: use one of {', '.join(self.labels)}") from None

    def node_name(self, label: str) -> str:
        self.node(label)
        return f"rabbit@{host_name(label)}"

    def running_labels(self) -> list[str]:
        return [lb for lb in self.labels if self.nodes[lb].is_running()]

    # -- ServerControl -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Direct failover URL over every node (kombu tries them in order)."""
        return ";".join(f"amqp://{self.user}:{self.password}@{self.nodes[lb].address}//" for lb in self.labels)

    @property
    def address(self) -> str:
        return self.nodes[self.labels[0]].address

    def addresses(self) -> dict[str, str]:
        return {lb: self.nodes[lb].address for lb in self.labels}

    @property
    def pids(self) -> list[int]:
        return [p for lb in self.labels for p in self.nodes[lb].pids]

    def is_running(self) -> bool:
        return all(n.is_running() for n in self.nodes.values())

    def is_paused(self) -> bool:
        return any(n.is_paused() for n in self.nodes.values())

    def await_ready(self) -> None:
        """Boot the seed, then the others (classic-config discovery), form and check, within the deadline."""
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        seed = self.labels[0]
        self._start_container(seed)
        self.nodes[seed].await_ready()
        self.timings["seed_ready"] = time.monotonic() - t0
        for lb in self.labels[1:]:
            self._start_container(lb)
        for lb in self.labels[1:]:  # they boot in parallel
            self.nodes[lb].await_ready()
        self.timings["nodes_ready"] = time.monotonic() - t0
        self._form(deadline)
        self.timings["formed"] = time.monotonic() - t0
        if self.settings.policies and not self._policies_applied:
            apply_policies(self.settings.policies, self.ctl)  # once: a policy is cluster-wide
            self._policies_applied = True
            self.timings["policies"] = time.monotonic() - t0

    def _start_container(self, label: str) -> None:
        node = self.nodes[label]
        if label in self._started:
            if node.is_paused():
                node.unpause()
            elif not node.is_running():
                node.container.start()
            return
        node.container.start()
        self._started.add(label)

    def _form(self, deadline: float) -> None:
        """Join each node that is not a member of the seed's cluster, then check all three run together."""
        seed = self.labels[0]
        members = self._members(seed, deadline)
        for lb in self.labels[1:]:
            if self.node_name(lb) in members:
                continue
            expr = (f"ok = rabbit:stop(), "
                    f"case rabbit_mnesia:join_cluster('{self.node_name(seed)}', disc) of "
                    f"ok -> ok; {{ok, already_member}} -> ok end, ok = rabbit:start().")
            try:
                self.nodes[lb].ctl("eval", expr, timeout=max(1.0, deadline - time.monotonic()))
            except HarnessError as exc:
                raise StackStartTimeout(f"the RabbitMQ cluster did not form: {lb} could not join {seed}: {exc}") \
                    from None
        members = self._members(seed, deadline)
        missing = [lb for lb in self.labels if self.node_name(lb) not in members]
        if missing:
            raise StackStartTimeout(f"the RabbitMQ cluster did not form within {self.startup_timeout:.0f} s: "
                                    f"{', '.join(missing)} not running in {seed}'s cluster "
                                    f"(docker logs of {self.nodes[missing[0]].container_name})")

    def _members(self, label: str, deadline: float) -> set[str]:
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
        """Wait until every node runs in one cluster again (after a fault); HarnessError after `timeout`."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen: set[str] = set()
        for _ in range(int(timeout) + 1):  # each look is one rabbitmqctl call (~1 s)
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
                           f"{sorted(seen) or 'none'} of {', '.join(self.labels)}")

    def start(self) -> ContainerRabbitMQCluster:
        """Start every node that is down (same containers, data, ports) and wait until all three run together."""
        for lb in self.labels:
            self._start_container(lb)
        for lb in self.labels:
            self.nodes[lb].await_ready()
        self.await_members(self.startup_timeout)
        return self

    def kill(self) -> None:
        """docker kill every node; data stays for start()."""
        for n in self.nodes.values():
            n.kill()

    def stop(self) -> None:
        """Stop every node gracefully, in parallel."""
        with ThreadPoolExecutor(len(self.labels)) as pool:
            list(pool.map(lambda n: n.stop(), self.nodes.values()))

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """`rabbitmqctl ARGS` in the first running node (cluster-wide settings such as alarms, policies)."""
        lb = next(iter(self.running_labels()), self.labels[0])
        return self.nodes[lb].ctl(*args, timeout=timeout)

    # -- partition ----------------------------------------------------------------------------------
    def _dist_network(self) -> Any:
        self._dist.reload()
        return self._dist

    def is_isolated(self, label: str) -> bool:
        c = self.node(label).container
        c.reload()
        return self._dist.name not in (c.attrs.get("NetworkSettings", {}).get("Networks") or {})

    def isolate(self, label: str) -> dict[str, object]:
        """Cut node `label` from its peers: its container leaves the cluster's network (docker network
        disconnect), then its peers close their inter-node connections to it (it sees them gone after
        the net tick time).

        Why the second step: a container disconnected from a network keeps its established sockets,
        which can go on sending with the address it had there through its remaining network's
        default route, and Docker's rules let a packet with a source in the cluster network's subnet
        through to it: a peer could keep receiving the cut node's ticks. Closing them
        (``erlang:disconnect_node``) leaves only new connections, which cannot form: the ``rmq-nX``
        names resolve on the cluster network only. Its clients still reach it over the stack's
        network (docs/containers.md).
        """
        node = self.node(label)
        if not self.is_isolated(label):
            self._dist.disconnect(node.container, force=True)
        others = [lb for lb in self.labels if lb != label]

        def close(on: str, names: list[str]) -> str:
            expr = "[erlang:disconnect_node(N) || N <- [" + ", ".join(f"'{n}'" for n in names) + "]]."
            try:
                self.nodes[on].ctl("eval", expr, timeout=30)
                return on
            except HarnessError as exc:  # a node down or paused: nothing of it to close
                return f"{on}: {exc}"

        # On the peers only: on the cut node itself the call hung until its 30 s timeout (its links
        # to peers it can no longer reach); it sees them gone after the net tick time instead.
        calls = [(lb, [self.node_name(label)]) for lb in others]
        with ThreadPoolExecutor(len(calls)) as pool:
            closed = list(pool.map(lambda c: close(*c), calls))
        return {"network": self._dist.name, "action": "docker network disconnect", "container": node.container_name,
                "connections_closed_on": closed}

    def reconnect(self, label: str) -> dict[str, object]:
        """Put node `label` back on the cluster's network, under its rmq-nX alias (docker network connect)."""
        node = self.node(label)
        if self.is_isolated(label):
            self._dist.connect(node.container, aliases=[host_name(label)])
        return {"network": self._dist.name, "action": "docker network connect", "container": node.container_name}

    def temp_dirs(self) -> list[str]:
        return []

    def logs(self, lines: int = 50) -> str:
        return "\n".join(f"--- {lb} ---\n{self.nodes[lb].logs(lines)}" for lb in self.labels)
