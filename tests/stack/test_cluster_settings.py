"""A scenario's RabbitMQ configuration on the three-node local cluster: every node runs with its
``rabbitmq.conf`` setting and application environment (a key of its own replacing the cluster's
default), and its policy, set once, is the cluster's: every node lists it and applies it.

Marked full and cluster: it boots three RabbitMQ nodes (about 15 s).
"""

from __future__ import annotations

import json
import time

import kombu
import pytest

from harness.stack.local import LocalStack, LocalStackOptions
from harness.stack.rabbitmq_cluster import LocalRabbitMQCluster
from harness.stack.rabbitmq_config import RabbitMQPolicy, RabbitMQSettings

pytestmark = [pytest.mark.full, pytest.mark.cluster]

SETTINGS = RabbitMQSettings(
    conf={"consumer_timeout": 1234000, "cluster_partition_handling": "autoheal"},
    app_env={"channel_tick_interval": 30000},
    policies=(RabbitMQPolicy("chaos-ttl", "^ttl\\.", {"message-ttl": 300}, priority=2),),
)


def _queue_depth(url: str, name: str) -> int:
    with kombu.Connection(url, connect_timeout=5) as conn:
        return int(conn.default_channel.queue_declare(name, passive=True).message_count)


def test_settings_reach_every_node_and_the_policy_is_the_clusters():
    with LocalStack(LocalStackOptions(topology="cluster", rabbitmq=SETTINGS)) as stack:
        cluster = stack.broker
        assert isinstance(cluster, LocalRabbitMQCluster)
        assert cluster.members() == set(cluster.labels)
        for lb in cluster.labels:
            node = cluster.node(lb)
            env = node.ctl("eval", "{application:get_env(rabbit, consumer_timeout), "
                                   "application:get_env(rabbit, channel_tick_interval), "
                                   "application:get_env(rabbit, cluster_partition_handling)}.")
            assert "{{ok,1234000},{ok,30000},{ok,autoheal}}" in env.replace(" ", "").replace("\n", ""), (lb, env)
            (listed,) = json.loads(node.ctl("list_policies", "--formatter", "json"))
            assert (listed["name"], listed["pattern"], listed["priority"]) == ("chaos-ttl", "^ttl\\.", 2), lb
            assert json.loads(listed["definition"]) == {"message-ttl": 300}, lb

        # Each node applies it: a queue declared through each node (its home) drops an expired
        # message; a queue the pattern does not match keeps its own.
        tag = time.time_ns()
        queues = {lb: f"ttl.{lb}.{tag}" for lb in cluster.labels}
        keep = f"keep.{tag}"
        for lb, name in queues.items():
            # Confirmed: each message was in its queue, so an empty queue is an expired message.
            with kombu.Connection(cluster.node(lb).url, connect_timeout=5,
                                  transport_options={"confirm_publish": True}) as conn:
                channel = conn.default_channel
                channel.queue_declare(name, durable=True, auto_delete=False)
                producer = conn.Producer()
                if lb == cluster.labels[0]:
                    channel.queue_declare(keep, durable=True, auto_delete=False)
                    producer.publish("kept", exchange="", routing_key=keep, delivery_mode=2, retry=False)
                producer.publish("expires", exchange="", routing_key=name, delivery_mode=2, retry=False)
        deadline = time.monotonic() + 10
        depths: dict[str, int] = {}
        for _ in range(200):  # bounded by count and by the deadline
            depths = {lb: _queue_depth(cluster.node(lb).url, name) for lb, name in queues.items()}
            if not any(depths.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert depths == dict.fromkeys(cluster.labels, 0), depths
        assert _queue_depth(cluster.url.split(";")[0], keep) == 1
        listed_on = {lb: cluster.node(lb).ctl("list_queues", "name", "policy", "--formatter", "json")
                     for lb in cluster.labels}
        for lb, out in listed_on.items():
            by_name = {q["name"]: q["policy"] for q in json.loads(out)}
            assert {by_name[n] for n in queues.values()} == {"chaos-ttl"} and by_name[keep] == "", (lb, by_name)
