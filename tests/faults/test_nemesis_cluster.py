"""node_outage and node_partition against a real three-node RabbitMQ cluster (local stack,
topology="cluster"): each mode bites (the node is gone, frozen or cut off, its peers see it so,
clients fail over), the effect records the node and its pids, and heal brings it back into the
cluster. Marked full and cluster: the cluster takes 10-15 s to start on a 2-core box.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kombu
import pytest
from broker_probes import amqp_ok, durable_queue, get_one, publish_persistent

from harness.errors import UnsupportedFault
from harness.faults import NodeOutage, NodePartition
from harness.faults.drivers import driver_for
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role, capabilities

pytestmark = [pytest.mark.chaos, pytest.mark.full, pytest.mark.cluster]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_members(cluster: Any, seen_from: str, want: set[str], timeout: float = 45.0) -> set[str]:
    deadline = time.monotonic() + timeout
    got: set[str] = set()
    while time.monotonic() < deadline:
        got = cluster.members(seen_from, timeout=10)
        if got == want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{seen_from} saw {sorted(got)}, not {sorted(want)}, within {timeout} s")


def _node_url(stack: Any, role: Role, label: str) -> str:
    idx = stack.broker.labels.index(label)
    return stack.urls.node_proxies[role][idx].url


def _failover_round_trip(stack: Any, name: str) -> None:
    """A confirmed publish and a get through the role URLs, which list every node."""
    q = durable_queue(name)
    publish_persistent(stack.urls.url_for(Role.PRODUCER_BROKER), q, {"n": name})
    assert get_one(stack.urls.url_for(Role.WORKER_BROKER), q, timeout=10) == {"n": name}
    with kombu.Connection(stack.urls.url_for(Role.PRODUCER_BROKER), connect_timeout=5) as conn:
        q.bind(conn.default_channel).delete()


def _fault_ops(history: Path) -> list[Any]:
    return [op for op in read_history(history) if op.process == "nemesis"]


def test_the_cluster_stack_routes_clients_and_peers_through_the_proxy(chaos_cluster_stack: Any) -> None:
    stack = chaos_cluster_stack
    assert "cluster" in capabilities(stack)
    assert stack.broker.members("n1") == {"n1", "n2", "n3"}
    for role in (Role.PRODUCER_BROKER, Role.WORKER_BROKER):
        eps = stack.urls.node_proxies[role]
        assert len(eps) == 3 and stack.urls.url_for(role) == ";".join(e.url for e in eps)
    assert len(stack.broker.dist_proxies) == 6  # one per ordered pair of nodes
    # Each node's memory alarm threshold is the small absolute one, not 80 % of the machine.
    limit = int(stack.broker.node("n2").ctl("eval", "vm_memory_monitor:get_memory_limit().").split()[0])
    assert limit == 512 * 10**6  # rabbitmq.conf's MB


@pytest.mark.parametrize("mode", ["kill", "stop", "restart", "pause"])
def test_node_outage_takes_one_node_and_heal_brings_it_back(chaos_cluster_stack: Any, tmp_path: Path,
                                                            mode: str) -> None:
    stack = chaos_cluster_stack
    cluster = stack.broker
    node = cluster.node("n2")
    before = list(node.pids)
    n = Nemesis(stack, history_dir=tmp_path / "history")
    try:
        with n.fault(NodeOutage("n2", mode)) as applied:
            eff = applied.effect
            assert eff["node"] == "n2" and eff["node_name"] == cluster.node_name("n2") and eff["pids"] == before
            if mode in ("kill", "stop"):
                assert not node.is_running()
                _wait_members(cluster, "n1", {"n1", "n3"}, timeout=20)
            elif mode == "restart":
                assert node.is_running() and eff["new_pids"] != before
                _wait_members(cluster, "n1", {"n1", "n2", "n3"})
            else:
                assert {_state(p) for p in before} == {"T"}
                t = time.monotonic()
                assert not amqp_ok(_node_url(stack, Role.PRODUCER_BROKER, "n2"), timeout=1.0)
                assert time.monotonic() - t >= 0.9, "a frozen node accepts and never answers"
            if mode != "pause":
                # Clients fail over: the role URLs list every node.
                _failover_round_trip(stack, f"cluster-outage-{mode}")
        assert stack.broker.members("n1") == {"n1", "n2", "n3"}
        assert amqp_ok(_node_url(stack, Role.PRODUCER_BROKER, "n2"), timeout=5.0)
    finally:
        n.close()
    ops = _fault_ops(tmp_path / "history")
    start = next(op for op in ops if op.f == F.FAULT_START and op.type is OpType.OK)
    assert start.value["kind"] == "node_outage" and "cuts_running_tasks" not in start.value
    heal = next(op for op in ops if op.f == F.FAULT_STOP and op.type is not OpType.INVOKE)
    assert heal.type is OpType.OK, heal
    assert not driver_for(NodeOutage()).cuts_running_tasks


@pytest.mark.parametrize("mode", ["proxy_down", "blackhole"])
def test_node_partition_cuts_one_node_from_its_peers_only(chaos_cluster_stack: Any, tmp_path: Path,
                                                          mode: str) -> None:
    stack = chaos_cluster_stack
    cluster = stack.broker
    n = Nemesis(stack, history_dir=tmp_path / "history")
    try:
        with n.fault(NodePartition("n3", mode)) as applied:
            eff = applied.effect
            assert eff["node"] == "n3" and eff["peers"] == ["n1", "n2"] and eff["pids"] == cluster.node("n3").pids
            assert sorted(eff["proxies"]) == sorted(v for k, v in cluster.dist_proxies.items() if "n3" in k)
            assert len(eff["proxies"]) == 4
            # Its peers see it gone (at once when refused; after the net tick time, 10 s, when silent),
            _wait_members(cluster, "n1", {"n1", "n2"}, timeout=40)
            # and the node, alone in its minority, pauses itself (pause_minority): clients go elsewhere.
            _wait_members(cluster, "n3", set(), timeout=40)
            assert cluster.node("n3").is_running(), "a partition kills nothing"
            _failover_round_trip(stack, f"cluster-partition-{mode}")
        assert stack.broker.members("n1") == {"n1", "n2", "n3"}
    finally:
        n.close()
    ops = _fault_ops(tmp_path / "history")
    assert any(op.f == F.FAULT_STOP and op.type is OpType.OK for op in ops)


def test_cluster_faults_are_refused_on_a_single_node(chaos_stack: Any, tmp_path: Path) -> None:
    n = Nemesis(chaos_stack, history_dir=tmp_path / "history")
    try:
        with pytest.raises(UnsupportedFault, match="topology='cluster'"):
            with n.fault(NodePartition("n1")):
                pass
    finally:
        n.close()
