"""The certification's scenarios as data: which faults, when, under which profile.

Responsibility: a catalogue of named scenarios that apply to *any* Celery app with a workload
(triggers name no task, faults name client roles, not hosts). `celery-chaos certify` runs a
profile's selection; `scenarios/test_matrix.py` runs the same catalogue under pytest.

Every scenario's schedule is plain data (`harness.faults.Schedule`), printed in the report and
replayable. Each one must bite: a scenario whose fault found nothing to act on is `unknown`.

Example:
    >>> [s.name for s in select("quick")][:3]
    ['baseline', 'worker_child_sigkill', 'whole_worker_sigkill']
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError
from harness.faults import (
    BackendOutage,
    Bandwidth,
    BrokerOutage,
    ColdShutdown,
    KillWorker,
    KillWorkerChild,
    Latency,
    MemoryAlarm,
    NodeOutage,
    NodePartition,
    PartnerApiFault,
    ResetPeer,
    RolePartition,
    Schedule,
    Slicer,
    WarmShutdown,
    at,
    on_execute,
    when,
)

#: ``load`` is the quick selection, each scenario under a steady Locust load (``--load``).
PROFILES = ("quick", "full", "soak", "load")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One certification scenario.

    needs: capabilities the stack or system must offer: "process_control" (kill or restart a
    server), "partner_api" (a proxy named partner_api), "rabbitmq" (rabbitmqctl),
    "stack_backend" (the app's result backend is the stack's, so backend faults act on it),
    "rate_limits" (judges the tasks' own ``rate_limit``; skipped when no task declares one),
    "cluster" (a RabbitMQ cluster: ``certify --topology cluster``; skipped on one node).
    """

    name: str
    description: str
    schedule: Schedule
    profiles: frozenset[str]
    n_per_kind: int = 3
    submit_interval_s: float = 0.05
    needs: frozenset[str] = frozenset()
    workers: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "schedule": self.schedule.to_dict(),
                "profiles": sorted(self.profiles), "n_per_kind": self.n_per_kind,
                "submit_interval_s": self.submit_interval_s, "needs": sorted(self.needs), "workers": self.workers}


def _s(*faults) -> Schedule:  # type: ignore[no-untyped-def]
    return Schedule.of(*faults)


Q = frozenset({"quick", "full", "soak"})
F = frozenset({"full", "soak"})

CATALOGUE: tuple[Scenario, ...] = (
    Scenario("baseline", "no fault: every unit reaches its expected outcome, effects exactly once",
             _s(), Q),
    Scenario("worker_child_sigkill",
             "SIGKILL the pool child running a task right after it started (the next running task when that "
             "one already finished): the task must be redelivered and finish, its effects stored exactly once",
             _s(when(on_execute(nth=2), KillWorkerChild())), Q),
    Scenario("whole_worker_sigkill",
             "SIGKILL the whole worker (parent and children) mid-load, then start it again: "
             "unacked tasks come back, nothing is lost",
             _s(when(on_execute(nth=3), KillWorker(restart=True))), Q),
    Scenario("broker_outage_proxy_down",
             "the broker refuses every connection for 3 s (fast close): clients reconnect, nothing is lost",
             _s(at(0.3, BrokerOutage("proxy_down"), duration_s=3.0)), Q),
    Scenario("broker_blackhole",
             "a silent partition from the broker for 3 s (no RST, no data): heartbeats must notice, "
             "workers must resume after the heal",
             _s(at(0.3, BrokerOutage("blackhole"), duration_s=3.0)), Q),
    Scenario("broker_kill_restart",
             "SIGKILL the broker process and restart it: persistent messages in durable queues survive",
             _s(at(0.3, BrokerOutage("kill_restart"), duration_s=1.0)), Q, needs=frozenset({"process_control"})),
    Scenario("warm_shutdown_under_load",
             "SIGTERM a busy worker (warm shutdown) and start it again: running tasks finish or come back",
             _s(when(on_execute(nth=2), WarmShutdown(restart=True))), Q),
    Scenario("reset_peer_mid_task",
             "connection reset by peer on the workers' broker connections while tasks run "
             "(acks of running tasks are lost): redelivery may duplicate executions, never effects",
             _s(when(on_execute(nth=2), ResetPeer("worker_broker"), duration_s=0.5)), Q),
    Scenario("backend_outage",
             "the result backend is unreachable for 2 s while tasks complete",
             _s(at(0.3, BackendOutage("proxy_down"), duration_s=2.0)), Q, needs=frozenset({"stack_backend"})),
    Scenario("rate_limit_burst",
             "publish a burst of units all at once, above the tasks' declared rate_limit: no worker may start a "
             "rate-limited task faster than its limit (unknown when the burst never exceeded it)",
             _s(), Q, n_per_kind=10, submit_interval_s=0.0, needs=frozenset({"rate_limits"})),
    Scenario("partner_api_down",
             "the partner HTTP API refuses connections for 1 s: retryable errors are retried with backoff "
             "and the work completes (the system's retry window must outlast the outage)",
             _s(at(0.2, PartnerApiFault("down"), duration_s=1.0)), Q, needs=frozenset({"partner_api"})),
    # ---- full only ------------------------------------------------------------------
    Scenario("workers_partition",
             "only the workers are cut from the broker for 3 s; producers keep publishing",
             _s(at(0.3, RolePartition("worker_broker"), duration_s=3.0)), F),
    Scenario("producers_partition",
             "only the producers are cut from the broker for 2 s; publishes fail or are unknown, never silently lost",
             _s(at(0.2, RolePartition("producer_broker"), duration_s=2.0)), F),
    Scenario("broker_graceful_stop",
             "stop the broker gracefully and start it again",
             _s(at(0.3, BrokerOutage("graceful_stop"), duration_s=1.0)), F, needs=frozenset({"process_control"})),
    Scenario("backend_kill_restart",
             "SIGKILL the result backend and restart it",
             _s(at(0.3, BackendOutage("kill_restart"), duration_s=1.0)), F,
             needs=frozenset({"process_control", "stack_backend"})),
    Scenario("latency_with_jitter",
             "200 ms +- 100 ms latency both ways between workers and broker for 3 s",
             _s(at(0.2, Latency("worker_broker", ms=200, jitter_ms=100), duration_s=3.0)), F),
    Scenario("bandwidth_limit",
             "the workers' broker link limited to 32 KB/s for 3 s",
             _s(at(0.2, Bandwidth("worker_broker", kb_per_s=32), duration_s=3.0)), F),
    Scenario("slicer",
             "the workers' broker traffic sliced into small delayed pieces for 3 s",
             _s(at(0.2, Slicer("worker_broker", average_size=16, size_variation=8, delay_us=200),
                   duration_s=3.0)), F),
    Scenario("cold_shutdown",
             "SIGQUIT a busy worker (cold shutdown) and start it again",
             _s(when(on_execute(nth=2), ColdShutdown(restart=True))), F),
    Scenario("memory_alarm",
             "RabbitMQ memory alarm for 2 s: publishers are blocked, then resume",
             _s(at(0.2, MemoryAlarm(), duration_s=2.0)), F, needs=frozenset({"process_control", "rabbitmq"})),
    Scenario("partner_api_latency",
             "the partner API answers 1.5 s late for 1 s: slow calls succeed or are retried",
             _s(at(0.2, PartnerApiFault("latency", ms=1500), duration_s=1.0)), F, needs=frozenset({"partner_api"})),
    Scenario("child_kill_each_task",
             "fault coverage: SIGKILL the pool child running a task, then the children running each task name "
             "not cut yet (up to 12 kills): every cut task must be redelivered and finish, its effects stored "
             "exactly once",
             _s(when(on_execute(nth=2), KillWorkerChild(count=12))), F),
    Scenario("two_workers_one_killed",
             "two workers; SIGKILL one mid-load and do not restart it: the other takes over",
             _s(when(on_execute(nth=3), KillWorker(restart=False))), F, workers=2),
    # n1 is the first node of every client's failover list: queues are declared there.
    Scenario("cluster_node_kill",
             "three-node RabbitMQ cluster: SIGKILL the node the queues were declared on for 3 s, then start it: "
             "clients fail over; quorum queues keep every confirmed message, classic ones live on that node only",
             _s(at(0.3, NodeOutage("n1", "kill"), duration_s=3.0)), F, needs=frozenset({"cluster"})),
    Scenario("cluster_node_partition",
             "three-node RabbitMQ cluster: cut the node the queues were declared on from its peers for 3 s "
             "(pause_minority stops it; clients fail over), then heal",
             _s(at(0.3, NodePartition("n1", "proxy_down"), duration_s=3.0)), F, needs=frozenset({"cluster"})),
)

_BY_NAME = {s.name: s for s in CATALOGUE}


def select(profile: str, names: list[str] | None = None) -> list[Scenario]:
    """The scenarios of `profile` (optionally only `names`, in catalogue order)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if names:
        unknown = [n for n in names if n not in _BY_NAME]
        if unknown:
            raise ConfigError(f"unknown scenario(s) {unknown}: choose from {sorted(_BY_NAME)}")
        return [s for s in CATALOGUE if s.name in names]
    if profile == "load":
        profile = "quick"
    return [s for s in CATALOGUE if profile in s.profiles]


def get(name: str) -> Scenario:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}: choose from {sorted(_BY_NAME)}") from None


__all__ = ["CATALOGUE", "PROFILES", "Scenario", "get", "select"]
