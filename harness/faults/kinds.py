"""Fault kinds as data: one frozen dataclass per fault, named for what the user sees.

Responsibility: describe *what* a fault does (no I/O here; `harness.faults.nemesis` applies and
heals them), validate it when built with a message naming the fix, and round-trip it through
JSON with a ``"kind"`` discriminator.

Targets of network faults (``role``) are the stack's client roles, each with its own proxy:

==================  =============================================================
role                proxies cut / slowed
==================  =============================================================
producer_broker     producers -> broker
worker_broker       workers -> broker
producer_backend    producers -> result backend
worker_backend      workers -> result backend
broker              both broker roles
backend             both backend roles
workers             worker_broker and worker_backend
producers           producer_broker and producer_backend
any other name      an extra proxy made with ``stack.add_proxy(name, ...)`` (e.g. partner_api)
==================  =============================================================

``direction`` is ``both`` (default), ``to_server`` (what clients send) or ``to_client`` (what
servers answer).

Kinds (``kind`` in JSON): broker_outage, backend_outage, role_partition, latency, bandwidth,
reset_peer, slicer, limit_data, partner_api_fault, memory_alarm, broker_pause, broker_vanish,
node_outage, node_partition, kill_worker_child, kill_worker, warm_shutdown, cold_shutdown, pause_worker, scale_workers.

Example:
    >>> f = Latency(role="worker_broker", ms=200, jitter_ms=50)
    >>> f.to_dict()
    {'kind': 'latency', 'role': 'worker_broker', 'ms': 200, 'jitter_ms': 50, 'direction': 'both'}
    >>> fault_from_dict(f.to_dict()) == f
    True
    >>> BrokerOutage(mode="unplug")
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: broker_outage: mode must be one of proxy_down, blackhole, kill_restart, graceful_stop, not 'unplug'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from harness.errors import InvalidSchedule

__all__ = [
    "DIRECTIONS",
    "FAULT_KINDS",
    "OUTAGE_MODES",
    "ROLE_GROUPS",
    "ROLES",
    "Bandwidth",
    "BackendOutage",
    "BrokerOutage",
    "BrokerPause",
    "BrokerVanish",
    "ColdShutdown",
    "Fault",
    "KillWorker",
    "KillWorkerChild",
    "Latency",
    "LimitData",
    "MemoryAlarm",
    "NodeOutage",
    "NodePartition",
    "PartnerApiFault",
    "PauseWorker",
    "ResetPeer",
    "RolePartition",
    "ScaleWorkers",
    "Slicer",
    "WarmShutdown",
    "fault_from_dict",
]

ROLES: tuple[str, ...] = ("producer_broker", "worker_broker", "producer_backend", "worker_backend")
ROLE_GROUPS: Mapping[str, tuple[str, ...]] = {
    "broker": ("producer_broker", "worker_broker"),
    "backend": ("producer_backend", "worker_backend"),
    "workers": ("worker_broker", "worker_backend"),
    "producers": ("producer_broker", "producer_backend"),
}
DIRECTIONS: tuple[str, ...] = ("both", "to_server", "to_client")
OUTAGE_MODES: tuple[str, ...] = ("proxy_down", "blackhole", "kill_restart", "graceful_stop")
PARTITION_MODES: tuple[str, ...] = ("proxy_down", "blackhole")
PARTNER_MODES: tuple[str, ...] = ("down", "blackhole", "latency", "reset_peer")
NODE_OUTAGE_MODES: tuple[str, ...] = ("kill", "stop", "restart", "pause")

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def role_proxies(role: str) -> tuple[str, ...]:
    """The role names (or the extra proxy name) a ``role`` target stands for.

    >>> role_proxies("broker"), role_proxies("partner_api")
    (('producer_broker', 'worker_broker'), ('partner_api',))
    """
    if role in ROLE_GROUPS:
        return ROLE_GROUPS[role]
    return (role,)


# -- validation helpers -------------------------------------------------------------------------


def _bad(kind: str, msg: str) -> InvalidSchedule:
    return InvalidSchedule(f"{kind}: {msg}")


def _check_role(kind: str, role: Any) -> None:
    if not isinstance(role, str) or not _NAME.match(role):
        raise _bad(kind, f"role must be one of {', '.join((*ROLES, *ROLE_GROUPS))} or the name of an extra "
                         f"proxy (letters, digits, _ . -), not {role!r}")


def _check_direction(kind: str, direction: Any) -> None:
    if direction not in DIRECTIONS:
        raise _bad(kind, f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")


def _check_number(kind: str, name: str, value: Any, *, low: float = 0.0, integer: bool = False,
                  positive: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer and isinstance(value, float) and not value.is_integer():
        ok = False
    if ok and (value < low or (positive and value <= 0)):
        ok = False
    if not ok:
        what = "a whole number" if integer else "a number"
        bound = f"> {low:g}" if positive else f">= {low:g}"
        raise _bad(kind, f"{name} must be {what} {bound}, not {value!r}")


def _check_worker(kind: str, worker: Any) -> None:
    if worker is not None and (not isinstance(worker, str) or not worker):
        raise _bad(kind, f"worker must be a worker's node name ('w1'), its hostname ('w1@127.0.0.1'), '*' for "
                         f"every worker, or None for the first; not {worker!r}")


# -- the base -----------------------------------------------------------------------------------


class Fault:
    """Common behaviour of the fault dataclasses: JSON round trip and a one-line description.

    Subclasses are frozen, slotted dataclasses with a class-level ``kind`` and validate
    themselves in ``__post_init__``. What the harness does with a kind is its driver's
    (`harness.faults.drivers`).

    >>> isinstance(Latency(), Fault), Latency().describe()
    (True, "latency(role='worker_broker', ms=100, jitter_ms=0, direction='both')")
    """

    __slots__ = ()
    kind: ClassVar[str] = ""
    #: "network" (needs the fault proxy), "server" (broker/backend process), "worker".
    needs: ClassVar[str] = "network"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fault:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names - {"kind"})
        if unknown:
            raise InvalidSchedule(f"{cls.kind} has no option(s) {unknown}; its options are {sorted(names)}")
        if d.get("kind", cls.kind) != cls.kind:
            raise InvalidSchedule(f"a {d.get('kind')!r} fault cannot be read as {cls.kind!r}")
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    def describe(self) -> str:
        """A short human description, for logs and reports."""
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{self.kind}({args})"

    @property
    def resources(self) -> tuple[str, ...]:
        """What the fault holds while active; two overlapping faults may not share one."""
        return ()


# -- broker / backend outages -----------------------------------------------------------------


class _ServerOutage(Fault):
    """What a broker outage and a backend outage share: the modes, and what each mode holds."""

    __slots__ = ()
    #: "broker" or "backend": the server and the role group of its proxies.
    server: ClassVar[str] = ""
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in OUTAGE_MODES:
            raise _bad(self.kind, f"mode must be one of {', '.join(OUTAGE_MODES)}, not {self.mode!r}")

    @property
    def needs(self) -> str:  # type: ignore[override]
        return "server" if self.mode in ("kill_restart", "graceful_stop") else "network"

    @property
    def resources(self) -> tuple[str, ...]:
        if self.mode in ("kill_restart", "graceful_stop"):
            return (f"server:{self.server}",)
        return tuple(f"proxy:{r}" for r in ROLE_GROUPS[self.server])


@dataclass(frozen=True, slots=True)
class BrokerOutage(_ServerOutage):
    """The broker is unavailable to every client, in one of its distinct forms.

    - ``proxy_down``: both broker proxies disabled: open connections closed, new ones refused;
    - ``blackhole``: both broker proxies drop every byte both ways (a silent partition: no
      RST, no FIN; only heartbeats and timeouts notice);
    - ``kill_restart``: the broker process SIGKILLed, started again at heal (data kept);
    - ``graceful_stop``: the broker stopped cleanly, started again at heal.

    >>> BrokerOutage("blackhole").resources
    ('proxy:producer_broker', 'proxy:worker_broker')
    """

    kind: ClassVar[str] = "broker_outage"
    server: ClassVar[str] = "broker"
    mode: str = "proxy_down"


@dataclass(frozen=True, slots=True)
class BackendOutage(_ServerOutage):
    """The result backend is unavailable to every client; modes as for `BrokerOutage`.

    >>> BackendOutage("kill_restart").needs
    'server'
    >>> BackendOutage("kill_restart").resources
    ('server:backend',)
    """

    kind: ClassVar[str] = "backend_outage"
    server: ClassVar[str] = "backend"
    mode: str = "proxy_down"


@dataclass(frozen=True, slots=True)
class RolePartition(Fault):
    """Cut one role only: ``RolePartition("worker_broker")`` cuts the workers from the broker
    while producers keep publishing. ``mode`` proxy_down (refused) or blackhole (silent).

    >>> RolePartition("producers").resources
    ('proxy:producer_broker', 'proxy:producer_backend')
    """

    kind: ClassVar[str] = "role_partition"
    role: str = "worker_broker"
    mode: str = "proxy_down"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        if self.mode not in PARTITION_MODES:
            raise _bad(self.kind, f"mode must be one of {', '.join(PARTITION_MODES)}, not {self.mode!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(f"proxy:{r}" for r in role_proxies(self.role))


# -- degraded network on one role's proxy -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency(Fault):
    """Add ``ms`` (± ``jitter_ms``) of delay to a role's traffic.

    >>> Latency("worker_backend", ms=-1)
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: latency: ms must be a whole number >= 0, not -1
    """

    kind: ClassVar[str] = "latency"
    role: str = "worker_broker"
    ms: int = 100
    jitter_ms: int = 0
    direction: str = "both"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        _check_number(self.kind, "ms", self.ms, integer=True)
        _check_number(self.kind, "jitter_ms", self.jitter_ms, integer=True)
        _check_direction(self.kind, self.direction)


@dataclass(frozen=True, slots=True)
class Bandwidth(Fault):
    """Limit a role's traffic to ``kb_per_s`` kilobytes per second.

    >>> Bandwidth("producer_broker", kb_per_s=0)
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: bandwidth: kb_per_s must be a whole number > 0, not 0
    """

    kind: ClassVar[str] = "bandwidth"
    role: str = "worker_broker"
    kb_per_s: int = 64
    direction: str = "both"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        _check_number(self.kind, "kb_per_s", self.kb_per_s, integer=True, positive=True)
        _check_direction(self.kind, self.direction)


@dataclass(frozen=True, slots=True)
class ResetPeer(Fault):
    """Reset a role's connections (TCP RST, "connection reset by peer") after ``after_ms``;
    while active, every new connection is reset too.

    >>> ResetPeer("worker_broker").after_ms
    0
    """

    kind: ClassVar[str] = "reset_peer"
    role: str = "worker_broker"
    after_ms: int = 0
    direction: str = "to_server"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        _check_number(self.kind, "after_ms", self.after_ms, integer=True)
        _check_direction(self.kind, self.direction)


@dataclass(frozen=True, slots=True)
class Slicer(Fault):
    """Cut a role's data into small packets (``average_size`` ± ``size_variation`` bytes) with
    ``delay_us`` microseconds between them: exercises partial reads in clients.

    >>> Slicer("worker_broker", average_size=8, size_variation=16)
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: slicer: size_variation (16) must be smaller than average_size (8)
    """

    kind: ClassVar[str] = "slicer"
    role: str = "worker_broker"
    average_size: int = 64
    size_variation: int = 32
    delay_us: int = 100
    direction: str = "both"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        _check_number(self.kind, "average_size", self.average_size, integer=True, positive=True)
        _check_number(self.kind, "size_variation", self.size_variation, integer=True)
        _check_number(self.kind, "delay_us", self.delay_us, integer=True)
        if self.size_variation >= self.average_size:
            raise _bad(self.kind, f"size_variation ({self.size_variation}) must be smaller than average_size "
                                  f"({self.average_size})")
        _check_direction(self.kind, self.direction)


@dataclass(frozen=True, slots=True)
class LimitData(Fault):
    """Close a role's connections once ``bytes`` have passed (per connection, per direction).

    >>> LimitData("worker_backend", bytes=1024).direction
    'to_client'
    """

    kind: ClassVar[str] = "limit_data"
    role: str = "worker_broker"
    bytes: int = 4096
    direction: str = "to_client"

    def __post_init__(self) -> None:
        _check_role(self.kind, self.role)
        _check_number(self.kind, "bytes", self.bytes, integer=True, positive=True)
        _check_direction(self.kind, self.direction)


@dataclass(frozen=True, slots=True)
class PartnerApiFault(Fault):
    """A fault on an external dependency routed through the proxy (``stack.add_proxy(proxy, ...)``).

    ``mode``: down (refused), blackhole (no answer), latency (``ms``), reset_peer.

    >>> PartnerApiFault(mode="latency", ms=500).resources
    ('proxy:partner_api',)
    """

    kind: ClassVar[str] = "partner_api_fault"
    mode: str = "down"
    proxy: str = "partner_api"
    ms: int = 1000

    def __post_init__(self) -> None:
        if self.mode not in PARTNER_MODES:
            raise _bad(self.kind, f"mode must be one of {', '.join(PARTNER_MODES)}, not {self.mode!r}")
        _check_role(self.kind, self.proxy)
        _check_number(self.kind, "ms", self.ms, integer=True)

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"proxy:{self.proxy}",)


@dataclass(frozen=True, slots=True)
class MemoryAlarm(Fault):
    """RabbitMQ memory alarm: publishers are blocked (``rabbitmqctl set_vm_memory_high_watermark``).

    ``watermark`` is the fraction of memory set while active (tiny: the alarm fires at once),
    ``restore`` the value set at heal (the local stack's configured 0.8).

    >>> MemoryAlarm().needs
    'server'
    """

    kind: ClassVar[str] = "memory_alarm"
    needs: ClassVar[str] = "server"
    watermark: float = 0.0000001
    restore: float = 0.8

    def __post_init__(self) -> None:
        for name in ("watermark", "restore"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1):
                raise _bad(self.kind, f"{name} must be a fraction of memory between 0 and 1, not {v!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return ("server:broker_memory",)


@dataclass(frozen=True, slots=True)
class BrokerPause(Fault):
    """The broker freezes: its processes are stopped (SIGSTOP; ``docker pause`` in a container)
    and thawed at heal. Connections stay open and nothing answers, not even a heartbeat: a hung
    broker host (a GC pause, a VM migration), as opposed to one that is down.

    >>> BrokerPause().resources, BrokerPause().needs
    (('server:broker',), 'server')
    """

    kind: ClassVar[str] = "broker_pause"
    needs: ClassVar[str] = "server"

    @property
    def resources(self) -> tuple[str, ...]:
        return ("server:broker",)


@dataclass(frozen=True, slots=True)
class BrokerVanish(Fault):
    """The broker's host is lost without a word to the clients of ``role``, and a new broker
    takes its address: the broker is SIGKILLed while the fault proxy of ``role`` withholds the
    end of every connection it carries. Those clients' sockets stay open and silent (half-open),
    as behind a load balancer that never learns its backend died, or to a host that lost power:
    no FIN, no RST, and TCP keepalives answered by the proxy. The other broker roles hear the
    crash as usual (connection reset).

    Heal starts the broker again (same port, credentials and data): new connections work. The
    old, half-open ones stay as they are until the run has been observed (the nemesis's
    ``release``, before the workers stop): only a client that notices by itself (AMQP
    heartbeats) gets back to work.

    >>> BrokerVanish().resources
    ('server:broker', 'proxy:worker_broker')
    >>> BrokerVanish("producer_backend")
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: broker_vanish: role must be one of producer_broker, worker_broker, broker (the broker's clients whose connections are left half-open), not 'producer_backend'
    """

    kind: ClassVar[str] = "broker_vanish"
    needs: ClassVar[str] = "server"
    role: str = "worker_broker"

    def __post_init__(self) -> None:
        if self.role not in (*ROLE_GROUPS["broker"], "broker"):
            raise _bad(self.kind, f"role must be one of {', '.join((*ROLE_GROUPS['broker'], 'broker'))} (the "
                                  f"broker's clients whose connections are left half-open), not {self.role!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return ("server:broker", *(f"proxy:{r}" for r in role_proxies(self.role)))


# -- one node of a RabbitMQ cluster -------------------------------------------------------------

_NODE_LABEL = re.compile(r"^n[1-9]$")


def _check_node(kind: str, node: Any) -> None:
    if not isinstance(node, str) or not _NODE_LABEL.match(node):
        raise _bad(kind, f"node must be a cluster node's label ('n1', 'n2', 'n3' in the local cluster), not {node!r}")


@dataclass(frozen=True, slots=True)
class NodeOutage(Fault):
    """One node of a RabbitMQ cluster (``topology="cluster"``) is lost while the others run on.

    - ``kill``: the node's VM SIGKILLed (no clean shutdown), started again at heal;
    - ``stop``: the node stopped cleanly, started again at heal;
    - ``restart``: stopped cleanly and started again at once (one step of a rolling restart);
    - ``pause``: the node's VM frozen (SIGSTOP), thawed at heal (SIGCONT): its peers and clients
      hear nothing, not even ticks, and its connections stay open.

    Heal waits until the node runs in the cluster again.

    >>> NodeOutage("n2", "pause").resources
    ('server:broker_node:n2',)
    >>> NodeOutage("rabbit@host")
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: node_outage: node must be a cluster node's label ('n1', 'n2', 'n3' in the local cluster), not 'rabbit@host'
    """

    kind: ClassVar[str] = "node_outage"
    needs: ClassVar[str] = "server"
    node: str = "n1"
    mode: str = "kill"

    def __post_init__(self) -> None:
        _check_node(self.kind, self.node)
        if self.mode not in NODE_OUTAGE_MODES:
            raise _bad(self.kind, f"mode must be one of {', '.join(NODE_OUTAGE_MODES)}, not {self.mode!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"server:broker_node:{self.node}",)


@dataclass(frozen=True, slots=True)
class NodePartition(Fault):
    """One node of a RabbitMQ cluster cut from the others: its inter-node traffic, which crosses
    the fault proxy, is refused (``proxy_down``: connections closed, peers see it down at once)
    or silently dropped (``blackhole``: noticed after the cluster's net tick time). Its clients
    still reach it. Heal restores the links and waits until it runs in the cluster again.

    >>> NodePartition("n1").resources
    ('cluster_link:n1',)
    """

    kind: ClassVar[str] = "node_partition"
    node: str = "n1"
    mode: str = "proxy_down"

    def __post_init__(self) -> None:
        _check_node(self.kind, self.node)
        if self.mode not in PARTITION_MODES:
            raise _bad(self.kind, f"mode must be one of {', '.join(PARTITION_MODES)}, not {self.mode!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"cluster_link:{self.node}",)


# -- workers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KillWorkerChild(Fault):
    """SIGKILL the prefork pool child executing a task (the task is cut mid-way).

    With a trigger (``on_execute("x")``, ``on_effect("charge")``) the child that produced the
    triggering op is killed, exactly that pid. Without one, the child running a task named
    ``task_name`` (any task when None) on ``worker`` (any when None) is awaited for up to
    ``wait_s`` seconds; if none runs, the fault never bit (recorded as such).

    ``count`` > 1 goes on cutting: after the first kill, up to ``count - 1`` more children,
    each running a task whose *name* no kill of this run has cut yet, within ``wait_s``
    (coverage: a bug hides in the task that was never cut). It stops early when no such task
    runs; the fault bit if the first kill landed.

    >>> KillWorkerChild(task_name="engine.slow").resources
    ('worker:*',)
    """

    kind: ClassVar[str] = "kill_worker_child"
    needs: ClassVar[str] = "worker"
    task_name: str | None = None
    worker: str | None = None
    wait_s: float = 10.0
    count: int = 1

    def __post_init__(self) -> None:
        if self.task_name is not None and (not isinstance(self.task_name, str) or not self.task_name):
            raise _bad(self.kind, f"task_name must be a registered task name or None (any task), not {self.task_name!r}")
        _check_worker(self.kind, self.worker)
        _check_number(self.kind, "wait_s", self.wait_s, positive=True)
        if not isinstance(self.count, int) or isinstance(self.count, bool) or not 1 <= self.count <= 100:
            raise _bad(self.kind, f"count must be an int from 1 to 100 (children to cut), not {self.count!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"worker:{self.worker or '*'}",)


@dataclass(frozen=True, slots=True)
class KillWorker(Fault):
    """SIGKILL a whole worker (main process and pool children); started again at heal when
    ``restart`` (after the scheduled duration). ``worker="*"`` kills every worker.

    >>> KillWorker(worker="w1").to_dict()
    {'kind': 'kill_worker', 'worker': 'w1', 'restart': True}
    """

    kind: ClassVar[str] = "kill_worker"
    needs: ClassVar[str] = "worker"
    worker: str | None = None
    restart: bool = True

    def __post_init__(self) -> None:
        _check_worker(self.kind, self.worker)
        if not isinstance(self.restart, bool):
            raise _bad(self.kind, f"restart must be True or False, not {self.restart!r}")

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"worker:{self.worker or '*'}",)


@dataclass(frozen=True, slots=True)
class WarmShutdown(Fault):
    """SIGTERM a worker's main process: it stops consuming, finishes running tasks (up to
    ``timeout_s``, then SIGKILL) and exits; started again at heal when ``restart``.

    >>> WarmShutdown(timeout_s=0)
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: warm_shutdown: timeout_s must be a number > 0, not 0
    """

    kind: ClassVar[str] = "warm_shutdown"
    needs: ClassVar[str] = "worker"
    worker: str | None = None
    restart: bool = True
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _check_worker(self.kind, self.worker)
        _check_number(self.kind, "timeout_s", self.timeout_s, positive=True)

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"worker:{self.worker or '*'}",)


@dataclass(frozen=True, slots=True)
class ColdShutdown(Fault):
    """SIGQUIT a worker's main process: it exits at once, cutting running tasks; started again
    at heal when ``restart``.

    >>> ColdShutdown(worker="*").resources
    ('worker:*',)
    """

    kind: ClassVar[str] = "cold_shutdown"
    needs: ClassVar[str] = "worker"
    worker: str | None = None
    restart: bool = True

    def __post_init__(self) -> None:
        _check_worker(self.kind, self.worker)

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"worker:{self.worker or '*'}",)


@dataclass(frozen=True, slots=True)
class PauseWorker(Fault):
    """Freeze a worker (SIGSTOP to its process group) and thaw it at heal (SIGCONT): a hung
    worker whose connections stay open and whose heartbeats stop.

    >>> PauseWorker("w2").worker
    'w2'
    """

    kind: ClassVar[str] = "pause_worker"
    needs: ClassVar[str] = "worker"
    worker: str | None = None

    def __post_init__(self) -> None:
        _check_worker(self.kind, self.worker)

    @property
    def resources(self) -> tuple[str, ...]:
        return (f"worker:{self.worker or '*'}",)


@dataclass(frozen=True, slots=True)
class ScaleWorkers(Fault):
    """Run ``count`` workers (clones of the first spec up, the newest warm-stopped down);
    the previous count is restored at heal.

    >>> ScaleWorkers(count=0)
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: scale_workers: count must be a whole number > 0, not 0
    """

    kind: ClassVar[str] = "scale_workers"
    needs: ClassVar[str] = "worker"
    count: int = 2

    def __post_init__(self) -> None:
        _check_number(self.kind, "count", self.count, integer=True, positive=True)

    @property
    def resources(self) -> tuple[str, ...]:
        return ("worker:*",)


FAULT_KINDS: Mapping[str, type[Fault]] = {
    cls.kind: cls
    for cls in (BrokerOutage, BackendOutage, RolePartition, Latency, Bandwidth, ResetPeer, Slicer, LimitData,
                PartnerApiFault, MemoryAlarm, BrokerPause, BrokerVanish, NodeOutage, NodePartition,
                KillWorkerChild, KillWorker, WarmShutdown, ColdShutdown, PauseWorker, ScaleWorkers)
}


def fault_from_dict(d: Mapping[str, Any]) -> Fault:
    """The fault a dict (from `Fault.to_dict` or JSON) describes, validated.

    >>> fault_from_dict({"kind": "kill_worker", "worker": "w1"})
    KillWorker(worker='w1', restart=True)
    >>> fault_from_dict({"kind": "unplug"})
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: unknown fault kind 'unplug': use one of broker_outage, backend_outage, role_partition, latency, bandwidth, reset_peer, slicer, limit_data, partner_api_fault, memory_alarm, broker_pause, broker_vanish, node_outage, node_partition, kill_worker_child, kill_worker, warm_shutdown, cold_shutdown, pause_worker, scale_workers
    """
    if not isinstance(d, Mapping):
        raise InvalidSchedule(f"a fault must be a JSON object with a 'kind', not {type(d).__name__}")
    kind = d.get("kind")
    cls = FAULT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidSchedule(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
    try:
        return cls.from_dict(d)
    except TypeError as exc:  # e.g. a positional mismatch from odd JSON
        raise InvalidSchedule(f"{kind}: {exc}") from None
