"""Cluster fault drivers: one node of a local RabbitMQ cluster lost, frozen or cut from its peers.

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
node_outage          kill: SIGKILL the node's VM; stop: stop it cleanly;          start the node again
                     restart: stop and start it at once; pause: SIGSTOP its       (SIGCONT a paused
                     VM                                                           one); wait until it
                                                                                  runs in the cluster
node_partition       its four inter-node proxies (to and from each peer)          enable them / remove
                     disabled (proxy_down) or blackholed (every byte dropped)     the toxics; wait as
                                                                                  above
===================  ==========================================================  ====================

Both need ``LocalStack(LocalStackOptions(topology="cluster"))``: the partition works because the
cluster routes each node's traffic to each peer through its own proxy (`harness.stack.epmd`),
so no root, iptables or change to the nodes is needed. The effect names the node, its Erlang
node name and the pids signalled or the proxies cut.

Example:
    >>> from harness.faults.kinds import NodeOutage
    >>> NodeOutageDriver().fault_type is NodeOutage, NodeOutageDriver.cuts_running_tasks
    (True, False)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness.errors import UnsupportedFault
from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver
from harness.faults.drivers.network import outage
from harness.faults.kinds import NODE_OUTAGE_MODES, PARTITION_MODES, NodeOutage, NodePartition
from harness.processes.freeze import freeze_group, thaw_group
from harness.stack.base import require

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["DRIVERS"]

#: How long a heal waits for the node to run in the cluster again: a node restart on a busy
#: 2-core box takes 5-15 s, and a partitioned node restarts its app when it sees a majority.
REJOIN_TIMEOUT_S = 90.0
_LABELS = ("n1", "n2", "n3")


def _cluster(ctx: FaultContext, fault: Any, what: str) -> Any:
    require(ctx.stack, "cluster", what)
    cluster: Any = ctx.stack.broker
    cluster.node(fault.node)  # ConfigError naming the labels when there is no such node
    return cluster


def _rejoin(cluster: Any) -> dict[str, Any]:
    return dict(cluster.await_members(REJOIN_TIMEOUT_S))


class NodeOutageDriver(FaultDriver[NodeOutage]):
    """node_outage: one cluster node killed, stopped, restarted or paused; heal: it runs in the
    cluster again."""

    fault_type = NodeOutage

    def preflight(self, ctx: FaultContext, fault: NodeOutage, what: str) -> None:
        _cluster(ctx, fault, what)

    def apply(self, ctx: FaultContext, fault: NodeOutage, app: Application) -> dict[str, Any]:
        cluster = _cluster(ctx, fault, fault.kind)
        node = cluster.node(fault.node)
        pids = list(node.pids)
        seen = {"node": fault.node, "node_name": cluster.node_name(fault.node), "pids": pids}
        t = time.monotonic()
        if fault.mode == "pause":
            app.on_heal(f"wait until {fault.node} runs in the cluster again", lambda: _rejoin(cluster))
            frozen = []
            for pgid in pids:

                def thaw(pgid: int = pgid) -> dict[str, Any]:
                    thaw_group(pgid)
                    return {"thawed": [pgid]}

                app.on_heal(f"SIGCONT {fault.node} process group {pgid}", thaw)
                frozen.append(freeze_group(pgid))
            return {**seen, "signal": "SIGSTOP", "process_groups": pids, "frozen": frozen}

        def start_again() -> dict[str, Any]:
            out: dict[str, Any] = {"node": fault.node}
            if not node.is_running():
                t1 = time.monotonic()
                node.start()
                out.update(action="started", start_s=round(time.monotonic() - t1, 3), pids=list(node.pids))
            return {**out, **_rejoin(cluster)}

        app.on_heal(f"start {fault.node} again and wait until it runs in the cluster", start_again)
        if fault.mode == "kill":
            node.kill()
            return {**seen, "action": "SIGKILL", "stop_s": round(time.monotonic() - t, 3)}
        node.stop()
        if fault.mode == "stop":
            return {**seen, "action": "graceful stop", "stop_s": round(time.monotonic() - t, 3)}
        stopped = time.monotonic()
        node.start()
        return {**seen, "action": "graceful restart", "stop_s": round(stopped - t, 3),
                "start_s": round(time.monotonic() - stopped, 3), "new_pids": list(node.pids)}

    def strategy(self, draws: Draws) -> SearchStrategy[NodeOutage]:
        from hypothesis import strategies as st

        return st.builds(NodeOutage, node=st.sampled_from(_LABELS), mode=st.sampled_from(NODE_OUTAGE_MODES))


class NodePartitionDriver(FaultDriver[NodePartition]):
    """node_partition: one cluster node's inter-node proxies disabled or blackholed; heal: they
    carry traffic again and the node runs in the cluster again."""

    fault_type = NodePartition

    def preflight(self, ctx: FaultContext, fault: NodePartition, what: str) -> None:
        cluster = _cluster(ctx, fault, what)
        ctx.toxiproxy  # noqa: B018 - raises when absent
        if not cluster.dist_proxies:
            raise UnsupportedFault(f"{what} needs the cluster's inter-node traffic behind the fault proxy: start it "
                                   "with LocalStackOptions(topology='cluster'), which routes it so")

    def apply(self, ctx: FaultContext, fault: NodePartition, app: Application) -> dict[str, Any]:
        cluster = _cluster(ctx, fault, fault.kind)
        proxies = sorted(name for pair, name in cluster.dist_proxies.items() if fault.node in pair)
        # Registered first, so it runs last at heal: after the links carry traffic again.
        app.on_heal(f"wait until {fault.node} runs in the cluster again", lambda: _rejoin(cluster))
        effect = outage(ctx, app, proxies, fault.mode)
        return {"node": fault.node, "node_name": cluster.node_name(fault.node), "pids": list(cluster.node(fault.node).pids),
                "peers": [lb for lb in cluster.labels if lb != fault.node], **effect}

    def strategy(self, draws: Draws) -> SearchStrategy[NodePartition]:
        from hypothesis import strategies as st

        return st.builds(NodePartition, node=st.sampled_from(_LABELS), mode=st.sampled_from(PARTITION_MODES))


DRIVERS: tuple[FaultDriver[Any], ...] = (NodeOutageDriver(), NodePartitionDriver())
