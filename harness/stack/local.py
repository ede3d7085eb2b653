"""The embedded local stack: real RabbitMQ, Redis and a Toxiproxy-compatible proxy as child processes.

Responsibility: provision a broker, a result backend and a fault proxy on loopback with no
Docker, create one proxy per client role, hand out direct and per-role URLs, and tear it
all down (processes, ports, temp dirs) on exit, failure or interrupt.

Example:
    >>> with LocalStack() as stack:                                     # doctest: +SKIP
    ...     app = Celery(broker=stack.urls.url_for(Role.PRODUCER_BROKER),
    ...                  backend=stack.urls.url_for(Role.PRODUCER_BACKEND))
    ...     stack.broker.kill(); stack.broker.start()   # broker outage by SIGKILL
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, free_port
from harness.stack.base import ProxiedEndpoint, Role, StackLifecycle, StackURLs
from harness.stack.rabbitmq import LocalRabbitMQ, installed_schema
from harness.stack.rabbitmq_cluster import LocalRabbitMQCluster
from harness.stack.rabbitmq_config import RabbitMQSettings
from harness.stack.redis import LocalRedis
from harness.stack.sqlite_backend import LocalSQLiteBackend
from harness.toxiproxy.client import ToxiproxyClient

#: The result backends the local stack can serve (`LocalStackOptions.result_backend`).
RESULT_BACKENDS: tuple[str, ...] = ("redis", "sqlite", "rpc")


@dataclass(frozen=True, slots=True)
class LocalStackOptions:
    """How to build the local stack.

    broker:            "rabbitmq" (default) or "redis" (Redis as broker: a second redis-server)
    redis_aof:         AOF with fsync always on the backend (and a Redis broker), for durability scenarios
    startup_timeout:   seconds each server may take to become ready (a clear error after it)
    toxiproxy:         "auto" (TOXIPROXY_URL, else toxiproxy-server on PATH, else built-in),
                       "builtin", "real", or an http:// URL of a running Toxiproxy
    rabbitmq_management: enable the management plugin (off: it costs start-up time)
    topology:          "single" (one RabbitMQ node) or "cluster": three nodes, one proxy per node per
                       client role (clients get failover URLs), inter-node traffic proxied too
                       (`harness.stack.rabbitmq_cluster`; docs/cluster.md)
    rabbitmq:          the scenario's own RabbitMQ configuration (`RabbitMQSettings`: rabbitmq.conf
                       settings, application environment, policies), checked before the node starts;
                       on the cluster, every node gets the settings and the policies are set once
    result_backend:    "redis" (default: a redis-server behind the backend proxies), "sqlite"
                       (Celery's SQLAlchemy backend on a local file, ``db+sqlite://``: chords
                       take ``chord_unlock``; backend outages move the file away or lock it,
                       see `harness.stack.sqlite_backend`) or "rpc" (``rpc://``: results travel
                       on the broker, so broker faults are the backend faults)

    Example:
        >>> from harness.stack.rabbitmq_config import RabbitMQSettings
        >>> LocalStackOptions(broker="redis", rabbitmq=RabbitMQSettings(conf={"consumer_timeout": 3000}))
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: rabbitmq settings need broker='rabbitmq', not 'redis': drop them or use RabbitMQ
    """

    broker: Literal["rabbitmq", "redis"] = "rabbitmq"
    redis_aof: bool = False
    startup_timeout: float = 30.0
    toxiproxy: str = "auto"
    rabbitmq_management: bool = False
    env: dict[str, str] = field(default_factory=dict)
    rabbitmq: RabbitMQSettings = field(default_factory=RabbitMQSettings)
    topology: Literal["single", "cluster"] = "single"
    result_backend: Literal["redis", "sqlite", "rpc"] = "redis"

    def __post_init__(self) -> None:
        if self.broker not in ("rabbitmq", "redis"):
            raise ConfigError(f"broker must be 'rabbitmq' or 'redis', not {self.broker!r}")
        if not isinstance(self.rabbitmq, RabbitMQSettings):
            raise ConfigError(f"rabbitmq must be a RabbitMQSettings, not {type(self.rabbitmq).__name__}: build one "
                              "with harness.stack.rabbitmq_config.RabbitMQSettings(conf=..., policies=...)")
        if self.topology == "cluster":
            self.rabbitmq.check_for_cluster()
        if self.rabbitmq and self.broker != "rabbitmq":
            raise ConfigError(f"rabbitmq settings need broker='rabbitmq', not {self.broker!r}: drop them or use "
                              "RabbitMQ")
        if self.result_backend not in RESULT_BACKENDS:
            raise ConfigError(f"result_backend must be one of {', '.join(RESULT_BACKENDS)}, not "
                              f"{self.result_backend!r}")
        if self.result_backend == "rpc" and self.broker != "rabbitmq":
            raise ConfigError("result_backend='rpc' needs broker='rabbitmq' (Celery's rpc:// backend is AMQP only)")
        if not (self.toxiproxy in ("auto", "builtin", "real") or self.toxiproxy.startswith("http")):
            raise ConfigError(
                f"toxiproxy must be 'auto', 'builtin', 'real' or an http:// URL, not {self.toxiproxy!r}")
        if self.topology not in ("single", "cluster"):
            raise ConfigError(f"topology must be 'single' or 'cluster', not {self.topology!r}")
        if self.topology == "cluster" and self.broker != "rabbitmq":
            raise ConfigError("topology='cluster' needs broker='rabbitmq' (a Redis broker has no cluster here)")
        if self.topology == "cluster" and self.result_backend != "redis":
            raise ConfigError(f"topology='cluster' serves a Redis result backend only, not {self.result_backend!r}: "
                              "use result_backend='redis' or topology='single'")
        if self.startup_timeout <= 0:
            raise ConfigError(f"startup_timeout must be positive, not {self.startup_timeout}")


def _with_port(url: str, host: str, port: int) -> str:
    """Replace host:port in a broker/backend URL (credentials and path kept)."""
    scheme, rest = url.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    _hostport, _, path = tail.partition("/")
    prefix = f"{creds}@" if creds else ""
    return f"{scheme}://{prefix}{host}:{port}/{path}"


class LocalStack(StackLifecycle):
    """Broker + result backend + Toxiproxy as local processes. Implements harness.stack.base.Stack."""

    provider = "local"

    def __init__(self, options: LocalStackOptions | None = None) -> None:
        self.options = options or LocalStackOptions()
        self._tag = secrets.token_hex(3)
        self._exit = ExitStack()
        self._broker: LocalRabbitMQ | LocalRabbitMQCluster | LocalRedis | None = None
        self._backend: LocalRedis | LocalSQLiteBackend | None = None
        self._booted = False
        self._toxiproxy_proc: ManagedProcess | None = None
        self._toxiproxy_dir: Path | None = None
        self._external_toxiproxy = False
        self.toxiproxy: ToxiproxyClient | None = None
        self._urls: StackURLs | None = None
        self._extra: dict[str, ProxiedEndpoint] = {}
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> LocalStack:
        """Start every server in parallel, wait for each, create the per-role proxies."""
        self.boot()
        return self.await_ready()

    def boot(self) -> StackURLs:
        """Spawn every server, wait for the proxy only and create the per-role proxies.

        Returns the URLs at once, while the broker and the backend still boot (a proxy needs only
        its upstream's address, fixed before the server starts): workers can be spawned now and
        import their app during the broker's boot. Call `await_ready` before using the stack.

        Example::

            stack = LocalStack()
            urls = stack.boot()
            group.spawn(broker_wait=30)   # workers start while RabbitMQ boots
            stack.await_ready()
        """
        self._t0 = time.monotonic()
        try:
            self._boot()
        except BaseException:
            self.stop()
            raise
        assert self._urls is not None
        return self._urls

    def await_ready(self) -> LocalStack:
        """Wait until the backend and the broker answer (after `boot`); stop everything on failure."""
        if self._broker is None or not self._booted:
            raise RuntimeError("the stack is not booted: call boot() or start() first")
        try:
            if self._backend is not None:
                self._backend.await_ready()
            self.timings["backend"] = time.monotonic() - self._t0
            self._broker.await_ready()
            self.timings["broker"] = time.monotonic() - self._t0
        except BaseException:
            self.stop()
            raise
        self.timings["stack"] = time.monotonic() - self._t0
        return self

    def _boot(self) -> None:
        o = self.options
        if o.topology == "cluster":
            self._boot_cluster()
            return
        # Spawn everything first (they boot in parallel), then wait for each in turn.
        if o.broker == "rabbitmq":
            self._broker = LocalRabbitMQ(startup_timeout=o.startup_timeout, management=o.rabbitmq_management,
                                         settings=o.rabbitmq)
            self._exit.callback(self._broker.close)
        else:
            self._broker = LocalRedis(name="redis-broker", aof=o.redis_aof, startup_timeout=o.startup_timeout)
            self._exit.callback(self._broker.close)
        if o.result_backend == "redis":
            self._backend = LocalRedis(name="redis-backend", aof=o.redis_aof, startup_timeout=o.startup_timeout)
        elif o.result_backend == "sqlite":
            self._backend = LocalSQLiteBackend()
        if self._backend is not None:
            self._exit.callback(self._backend.close)
        self._broker.spawn()
        if self._backend is not None:
            self._backend.spawn()
        self._booted = True
        self._start_toxiproxy()
        self.timings["toxiproxy"] = time.monotonic() - self._t0
        # Proxies are created while the servers boot: creating one does not dial its upstream.
        self._urls = self._make_urls()
        self.timings["proxies"] = time.monotonic() - self._t0

    def _boot_cluster(self) -> None:
        o = self.options
        if o.rabbitmq:
            # Before any server starts (each node checks again when it is built, after the proxy).
            installed_schema(management=o.rabbitmq_management).check(o.rabbitmq)
        self._backend = LocalRedis(name="redis-backend", aof=o.redis_aof, startup_timeout=o.startup_timeout)
        self._exit.callback(self._backend.close)
        self._backend.spawn()
        # The nodes reach each other through the proxy: it must run before they boot.
        self._start_toxiproxy()
        self.timings["toxiproxy"] = time.monotonic() - self._t0

        def dist_proxy(name: str, upstream: str) -> tuple[str, int]:
            ep = self._make_proxy(name, upstream, None)
            return ep.proxy_name, ep.listen_port

        # Three VMs booting at once on a small box take about twice one node's boot.
        cluster = LocalRabbitMQCluster(startup_timeout=2 * o.startup_timeout, proxy=dist_proxy,
                                       management=o.rabbitmq_management, settings=o.rabbitmq)
        self._broker = cluster
        self._exit.callback(cluster.close)
        cluster.spawn()
        self._booted = True
        self._urls = self._make_cluster_urls(cluster)
        self.timings["proxies"] = time.monotonic() - self._t0

    def _make_cluster_urls(self, cluster: LocalRabbitMQCluster) -> StackURLs:
        """One proxy per node per broker role; each role's URL lists them all (kombu fails over)."""
        assert self._backend is not None and self.toxiproxy is not None
        proxied: dict[Role, ProxiedEndpoint] = {}
        per_node: dict[Role, tuple[ProxiedEndpoint, ...]] = {}
        for role in Role:
            if not role.is_broker:
                proxied[role] = self._make_proxy(role, self._backend.address, self._backend.url)
                continue
            eps = tuple(self._make_proxy(f"{role.proxy_name}_{lb}", n.address, n.url)
                        for lb, n in cluster.nodes.items())
            eps = tuple(ProxiedEndpoint(role, e.proxy_name, e.listen_host, e.listen_port, e.upstream, e.url)
                        for e in eps)
            per_node[role] = eps
            first = eps[0]
            proxied[role] = ProxiedEndpoint(role, first.proxy_name, first.listen_host, first.listen_port,
                                            first.upstream, ";".join(e.url for e in eps))
        return StackURLs(broker_url=cluster.url, backend_url=self._backend.url, toxiproxy_url=self.toxiproxy.url,
                         proxied=proxied, broker_kind="amqp", node_proxies=per_node)

    def _start_toxiproxy(self) -> None:
        choice = self.options.toxiproxy
        url = os.environ.get("TOXIPROXY_URL") if choice == "auto" else (choice if choice.startswith("http") else None)
        if url:
            self.toxiproxy = ToxiproxyClient(url)
            self.toxiproxy.wait_ready(timeout=self.options.startup_timeout)
            self._external_toxiproxy = True
            return
        real = shutil.which("toxiproxy-server")
        if choice == "real" and real is None:
            raise ConfigError("toxiproxy='real' but toxiproxy-server is not on PATH: install it, or use 'builtin'")
        argv_head = [real] if (real and choice in ("auto", "real")) else [sys.executable, "-m", "harness.toxiproxy"]
        port = free_port()
        self._toxiproxy_dir = Path(reaper.make_temp_dir("chaos-toxiproxy-"))
        self._exit.callback(reaper.remove_dir, self._toxiproxy_dir)
        self._toxiproxy_proc = ManagedProcess(
            "toxiproxy", [*argv_head, "-host", "127.0.0.1", "-port", str(port)],
            log_path=self._toxiproxy_dir / "toxiproxy.log",
        )
        self._toxiproxy_proc.start()
        self._exit.callback(self._toxiproxy_proc.stop, 5.0)
        client = ToxiproxyClient(f"http://127.0.0.1:{port}")
        self._toxiproxy_proc.wait_ready(client.version, timeout=self.options.startup_timeout,
                                        what=f"GET /version on 127.0.0.1:{port}")
        self.toxiproxy = client

    def _proxy_name(self, base: str) -> str:
        # A shared external Toxiproxy may serve several runs at once: keep our names apart.
        return f"chaos-{self._tag}-{base}" if self._external_toxiproxy else base

    def _make_proxy(self, role_or_name: Role | str, upstream: str, url_template: str | None) -> ProxiedEndpoint:
        assert self.toxiproxy is not None
        base = role_or_name.proxy_name if isinstance(role_or_name, Role) else role_or_name
        name = self._proxy_name(base)
        info = self.toxiproxy.create_proxy(name, upstream, listen="127.0.0.1:0")
        self._exit.callback(self._delete_proxy_quietly, name)
        host, port = info.listen_host, info.listen_port
        if host in ("[::]", "::", "0.0.0.0", ""):
            host = "127.0.0.1"
        url = _with_port(url_template, host, port) if url_template else f"http://{host}:{port}"
        role = role_or_name if isinstance(role_or_name, Role) else Role.PRODUCER_BROKER
        return ProxiedEndpoint(role=role, proxy_name=name, listen_host=host, listen_port=port,
                               upstream=upstream, url=url)

    def _delete_proxy_quietly(self, name: str) -> None:
        if self.toxiproxy is None or not self._external_toxiproxy:
            return  # our own server goes away with its process
        try:
            self.toxiproxy.delete_proxy(name)
        except Exception:  # noqa: BLE001 - teardown must go on
            pass

    def _make_urls(self) -> StackURLs:
        assert self._broker is not None and self.toxiproxy is not None
        broker_url = self._broker.url
        backend_url = self._backend.url if self._backend is not None else "rpc://"
        proxied = {}
        for role in Role:
            if role.is_broker:
                proxied[role] = self._make_proxy(role, self._broker.address, broker_url)
            elif isinstance(self._backend, LocalRedis):
                proxied[role] = self._make_proxy(role, self._backend.address, backend_url)
            # A SQLite file has no connection to proxy, and rpc:// results ride the broker's
            # proxies: the backend roles have no proxy of their own (url_for gives the direct URL).
        return StackURLs(broker_url=broker_url, backend_url=backend_url,
                         toxiproxy_url=self.toxiproxy.url, proxied=proxied,
                         broker_kind="amqp" if self.options.broker == "rabbitmq" else "redis")

    def add_proxy(self, name: str, upstream: str) -> ProxiedEndpoint:
        """Route another dependency (a partner API, a database) through the fault proxy.

        Adding a name again re-points that proxy at the new upstream (same port).

        Example: ``ep = stack.add_proxy("partner_api", "127.0.0.1:8099")`` then call ``ep.url``.
        """
        existing = self._extra.get(name)
        if existing is not None:
            # Re-pointing a dependency (a fresh partner API for the next scenario) keeps the
            # proxy's name and port, so faults and clients configured with it keep working.
            assert self.toxiproxy is not None
            self.toxiproxy.update_proxy(existing.proxy_name, upstream=upstream)
            ep = ProxiedEndpoint(existing.role, existing.proxy_name, existing.listen_host, existing.listen_port,
                                 upstream, existing.url)
            self._extra[name] = ep
            return ep
        ep = self._make_proxy(name, upstream, None)
        self._extra[name] = ep
        return ep

    def stop(self) -> None:
        """Tear down everything this stack started; safe to call twice."""
        self._exit.close()
        self._urls = None
        self._booted = False

    # -- accessors ----------------------------------------------------------------
    @property
    def broker(self) -> LocalRabbitMQ | LocalRabbitMQCluster | LocalRedis | None:
        return self._broker

    @property
    def backend(self) -> LocalRedis | LocalSQLiteBackend | None:
        """The result backend's control; None for ``rpc://`` (the broker is the backend)."""
        return self._backend

    def temp_dirs(self) -> list[str]:
        """Data and log directories this stack created (removed by stop(); for leak checks)."""
        dirs = [d for s in (self._broker, self._backend) if s is not None
                for d in ([str(s.base_dir)] if isinstance(s, (LocalRedis, LocalSQLiteBackend)) else
                          s.temp_dirs() if isinstance(s, LocalRabbitMQCluster) else [str(s.config.base_dir)])]
        if self._toxiproxy_dir is not None:
            dirs.append(str(self._toxiproxy_dir))
        return dirs

    def pids(self) -> list[int]:
        """OS pids of every server process this stack runs now (for leak checks)."""
        out: list[int] = []
        for server in (self._broker, self._backend):
            if server is not None:
                out.extend(server.pids)
        if self._toxiproxy_proc is not None and self._toxiproxy_proc.is_running():
            out.append(self._toxiproxy_proc.pid)
        return out
