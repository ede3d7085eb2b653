"""A three-node RabbitMQ cluster on the containers stack (ContainerStackOptions(topology="cluster")):
formation, each node_outage mode and node_partition with heal (three members again), clients
failing over through the per-node proxies, and teardown leaving no container or network.

Marked containers, cluster and full: three RabbitMQ containers take 15-25 s to form on a 2-core
box, so `make test` (which deselects full) does not run it; `make full` and `make test-containers` do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
from broker_probes import amqp_ok, durable_queue, get_one, publish_persistent

from harness.faults import NodeOutage, NodePartition
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role, capabilities
from harness.stack.rabbitmq_config import RabbitMQPolicy, RabbitMQSettings

pytestmark = [pytest.mark.containers, pytest.mark.cluster, pytest.mark.full]

SETTINGS = RabbitMQSettings(conf={"consumer_timeout": 1234000},
                            policies=(RabbitMQPolicy("chaos-cc-ttl", "^chaos-cc-ttl\\.", {"message-ttl": 300}),))


@pytest.fixture(scope="module")
def cluster_stack(image_mode: str) -> Iterator[Any]:
    from harness.stack.containers import ContainerStack, ContainerStackOptions

    stack = ContainerStack(ContainerStackOptions(images=image_mode, topology="cluster", rabbitmq=SETTINGS,
                                                 rabbitmq_management=False))
    t0 = time.monotonic()
    stack.start()
    stack.timings["test_start_s"] = time.monotonic() - t0
    try:
        yield stack
    finally:
        stack.stop()


def _wait_members(cluster: Any, seen_from: str, want: set[str], timeout: float = 45.0) -> set[str]:
    deadline = time.monotonic() + timeout
    got: set[str] = set()
    while time.monotonic() < deadline:
        try:
            got = cluster.members(seen_from, timeout=10)
        except Exception:  # noqa: BLE001 - a node mid-restart does not answer: look again
            got = set()
        if got == want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{seen_from} saw {sorted(got)}, not {sorted(want)}, within {timeout} s")


def _node_url(stack: Any, role: Role, label: str) -> str:
    return stack.urls.node_proxies[role][stack.broker.labels.index(label)].url


def _failover_round_trip(stack: Any, name: str) -> None:
    """A confirmed publish and a get through the role URLs, which list every node's proxy."""
    q = durable_queue(name)
    publish_persistent(stack.urls.url_for(Role.PRODUCER_BROKER), q, {"n": name})
    assert get_one(stack.urls.url_for(Role.WORKER_BROKER), q, timeout=10) == {"n": name}
    with kombu.Connection(stack.urls.url_for(Role.PRODUCER_BROKER), connect_timeout=5) as conn:
        q.bind(conn.default_channel).delete()


def _fault_ops(history: Path) -> list[Any]:
    return [op for op in read_history(history) if op.process == "nemesis"]


def test_three_containers_form_one_cluster_behind_per_node_proxies(cluster_stack: Any) -> None:
    stack = cluster_stack
    cluster = stack.broker
    print(f"\ncontainer cluster start: {stack.timings['test_start_s']:.2f} s "
          f"(seed ready {stack.timings['cluster_seed_ready']:.2f} s, nodes ready "
          f"{stack.timings['cluster_nodes_ready']:.2f} s, formed {stack.timings['cluster_formed']:.2f} s)")
    assert "cluster" in capabilities(stack)
    for lb in cluster.labels:
        assert cluster.members(lb) == {"n1", "n2", "n3"}
        assert cluster.node_name(lb) == f"rabbit@rmq-{lb}"
    names = set(stack.containers())
    assert {f"chaos-{stack.run_id}-broker-{lb}" for lb in ("n1", "n2", "n3")} <= names
    for role in (Role.PRODUCER_BROKER, Role.WORKER_BROKER):
        eps = stack.urls.node_proxies[role]
        assert len(eps) == 3 and stack.urls.url_for(role) == ";".join(e.url for e in eps)
        assert [amqp_ok(e.url, timeout=5.0) for e in eps] == [True, True, True]
    n2 = cluster.node("n2")
    # Bounded: the small absolute memory watermark, one scheduler; the scenario's settings on every node.
    assert int(n2.ctl("eval", "vm_memory_monitor:get_memory_limit().").split()[0]) == 512 * 10**6
    assert n2.ctl("eval", "erlang:system_info(schedulers).").split()[0] == "1"
    for lb in cluster.labels:
        got = cluster.node(lb).ctl("eval", "application:get_env(rabbit, consumer_timeout).")
        assert "1234000" in got, (lb, got)
        assert "chaos-cc-ttl" in cluster.node(lb).ctl("list_policies")
    _failover_round_trip(stack, "cc-formation")


@pytest.mark.parametrize(("mode", "label"), [("kill", "n1"), ("stop", "n1"), ("restart", "n2"), ("pause", "n2")])
def test_node_outage_takes_one_container_and_heal_brings_it_back(cluster_stack: Any, tmp_path: Path, mode: str,
                                                                 label: str) -> None:
    stack = cluster_stack
    cluster = stack.broker
    node = cluster.node(label)
    peers = {"n1", "n2", "n3"} - {label}
    watcher = sorted(peers)[0]
    before = list(node.pids)
    n = Nemesis(stack, history_dir=tmp_path / "history")
    try:
        with n.fault(NodeOutage(label, mode)) as applied:
            eff = applied.effect
            assert eff["node"] == label and eff["node_name"] == f"rabbit@rmq-{label}" and eff["pids"] == before
            if mode in ("kill", "stop"):
                assert not node.is_running()
                _wait_members(cluster, watcher, peers, timeout=30)
                # n1 is first in every role's URL and gone: kombu fails over to n2.
                assert not amqp_ok(_node_url(stack, Role.PRODUCER_BROKER, label), timeout=2.0)
                _failover_round_trip(stack, f"cc-outage-{mode}")
            elif mode == "restart":
                assert node.is_running() and eff["new_pids"] != before
                _wait_members(cluster, watcher, {"n1", "n2", "n3"})
                _failover_round_trip(stack, f"cc-outage-{mode}")
            else:
                assert eff["action"] == "docker pause" and node.is_paused()
                t = time.monotonic()
                assert not amqp_ok(_node_url(stack, Role.PRODUCER_BROKER, label), timeout=1.0)
                assert time.monotonic() - t >= 0.9, "a frozen node accepts and never answers"
        assert cluster.members(watcher) == {"n1", "n2", "n3"}
        assert node.is_running() and not node.is_paused()
        assert amqp_ok(_node_url(stack, Role.PRODUCER_BROKER, label), timeout=5.0)
    finally:
        n.close()
    ops = _fault_ops(tmp_path / "history")
    start = next(op for op in ops if op.f == F.FAULT_START and op.type is OpType.OK)
    assert start.value["kind"] == "node_outage"
    heal = next(op for op in ops if op.f == F.FAULT_STOP and op.type is not OpType.INVOKE)
    assert heal.type is OpType.OK, heal


def test_node_partition_disconnects_one_container_from_its_peers(cluster_stack: Any, tmp_path: Path) -> None:
    stack = cluster_stack
    cluster = stack.broker
    n = Nemesis(stack, history_dir=tmp_path / "history")
    try:
        with n.fault(NodePartition("n3", "blackhole")) as applied:
            eff = applied.effect
            assert eff["node"] == "n3" and eff["peers"] == ["n1", "n2"]
            assert eff["action"] == "docker network disconnect" and cluster.is_isolated("n3")
            # Its peers see it gone after the net tick time (10 s),
            _wait_members(cluster, "n1", {"n1", "n2"}, timeout=40)
            # and the node, alone in its minority, pauses itself (pause_minority): clients go elsewhere.
            _wait_members(cluster, "n3", set(), timeout=40)
            assert cluster.node("n3").is_running(), "a partition kills nothing"
            _failover_round_trip(stack, "cc-partition")
        assert not cluster.is_isolated("n3")
        assert cluster.members("n1") == {"n1", "n2", "n3"}
        assert cluster.members("n3") == {"n1", "n2", "n3"}
    finally:
        n.close()
    ops = _fault_ops(tmp_path / "history")
    assert any(op.f == F.FAULT_STOP and op.type is OpType.OK for op in ops)


def test_stop_removes_every_container_and_network(cluster_stack: Any) -> None:
    stack = cluster_stack
    run = stack.run_id
    assert stack.leftovers()["networks"], "the stack's networks exist while it runs"
    t = time.monotonic()
    stack.stop()
    print(f"\ncontainer cluster teardown: {time.monotonic() - t:.2f} s")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    import docker

    client = docker.from_env(timeout=30)
    try:
        names = {n.name for n in client.networks.list()}
        assert not {f"chaos-{run}", f"chaos-{run}-dist"} & names
        assert not [c.name for c in client.containers.list(all=True) if run in c.name]
    finally:
        client.close()
