"""`ContainerStack`: broker, result backend and Toxiproxy as labelled containers on a network of their own.

Responsibility: start the three containers in parallel (images resolved by `harness.images`),
wait for each, create one proxy per client role (and extra proxies for other dependencies),
hand out direct and per-role URLs, and remove everything it made by its run label on exit.
The options are `ContainerStackOptions`; see `harness.stack.containers` for each.

Example:
    >>> with ContainerStack(images="local") as stack:                  # doctest: +SKIP
    ...     stack.broker.pause(); stack.broker.unpause()
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.images.engine import docker_client, leftovers, owner_labels, remove_orphans, remove_run
from harness.images.names import LABEL_PROJECT, LABEL_ROLE, LABEL_RUN, ResolvedImage, Service
from harness.images.resolve import resolve_images
from harness.processes.managed import free_port
from harness.stack.base import ProxiedEndpoint, Role, StackLifecycle, StackURLs
from harness.stack.containers.options import ContainerStackOptions
from harness.stack.containers.servers import (
    ContainerRabbitMQ,
    ContainerServer,
    amqp_probe,
    files_tar,
    image_schema,
    redis_probe,
    wait_ready,
    with_hostport,
)
from harness.stack.rabbitmq_config import container_files
from harness.toxiproxy.client import ToxiproxyClient

__all__ = ["ContainerStack"]

_PROXY_BASE_PORT = 20000  # container-side listen ports of the role proxies (bridge mode)
_TOXIPROXY_API = 8474


def ryuk_off() -> None:
    # testcontainers' reaper (Ryuk) is a container pulled from a registry, which air-gapped CI
    # cannot do; this stack removes exactly what it made by label, so it does not need one.
    # The user's explicit TESTCONTAINERS_RYUK_DISABLED still wins.
    from testcontainers.core.config import testcontainers_config

    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True


class ContainerStack(StackLifecycle):
    """Broker + result backend + Toxiproxy as containers. Implements harness.stack.base.Stack.

    Build it with keyword options (ContainerStackOptions fields) or an options object;
    `open_stack("containers", **options)` does the former.
    """

    provider = "containers"

    def __init__(self, options: ContainerStackOptions | None = None, **given: Any) -> None:
        if options is not None and given:
            raise ConfigError(f"pass either options= or keyword options, not both (got {sorted(given)})")
        self.options = options or ContainerStackOptions.from_env(**given)
        self.run_id = secrets.token_hex(4)
        self._exit = ExitStack()
        self._client: Any = None
        self._network: Any = None
        self._own_network = True
        self._broker: ContainerServer | None = None
        self._backend: ContainerServer | None = None
        self._toxiproxy_container: Any = None
        self.toxiproxy: ToxiproxyClient | None = None
        self._relay: ToxiproxyClient | None = None
        self.images: dict[Service, ResolvedImage] = {}
        self._urls: StackURLs | None = None
        self._extra: dict[str, ProxiedEndpoint] = {}
        self._proxy_ports: dict[int, int] = {}   # container port -> host port (bridge mode)
        self._free_proxy_ports: list[int] = []
        self._credentials: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ContainerStack:
        """Start the containers in parallel, wait for each, create the per-role proxies."""
        if self._urls is not None:
            raise HarnessError("this ContainerStack is already started; build a new one for a second stack")
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["stack"] = time.monotonic() - t0
        return self

    def _start(self) -> None:
        o = self.options
        self._client = docker_client()
        self._exit.callback(self._client.close)
        # Registered first, so it runs last: whatever a half-done start left behind goes too.
        self._exit.callback(self._remove_everything)
        ryuk_off()
        remove_orphans(self._client)
        t0 = time.monotonic()
        wanted = [Service.RABBITMQ if o.broker == "rabbitmq" else Service.REDIS, Service.REDIS, Service.TOXIPROXY]
        self.images = resolve_images(dict.fromkeys(wanted), mode=o.image_mode, overrides=o.overrides,
                                     pull_timeout=o.pull_timeout, client=self._client)
        self.timings["images"] = time.monotonic() - t0
        from testcontainers.core.network import Network

        net = Network(docker_network_kw={"labels": self.labels("network")})
        net.name = f"chaos-{self.run_id}"
        self._network = net.create()
        t1 = time.monotonic()
        if o.broker == "rabbitmq":
            self._broker = self._rabbitmq()
        else:
            self._broker = self._redis("broker", aof=True)
        self._backend = self._redis("backend", aof=o.redis_aof)
        self._start_toxiproxy()
        self.timings["toxiproxy"] = time.monotonic() - t1
        self._backend.await_ready()
        self.timings["backend"] = time.monotonic() - t1
        self._broker.await_ready()
        self.timings["broker"] = time.monotonic() - t1
        self._urls = self._make_urls()

    def labels(self, role: str) -> dict[str, str]:
        """The labels of this stack's containers of `role` (its run id: `stop` removes them all by it)."""
        return {**self.options.labels, LABEL_PROJECT: "stack", LABEL_RUN: self.run_id, LABEL_ROLE: role,
                **owner_labels()}

    def _container(self, role: str, image: str, *, alias: str, ports: Mapping[int, int], env: Mapping[str, str],
                   command: list[str] | None = None, network_mode_host: bool = False,
                   files: Mapping[str, str] | None = None, before_start: Callable[[Any], None] | None = None,
                   **kwargs: Any) -> Any:
        """Create one labelled container, ports published on 127.0.0.1 only, then start it.

        Created and started in two steps (the docker SDK's create, then start) so that
        `before_start(container)` can read the image's files and `files` (path from ``/`` -> text)
        are in the container before its server boots: the broker reads its scenario's
        configuration at boot.
        """
        kw: dict[str, Any] = {"name": f"chaos-{self.run_id}-{role}", "environment": dict(env),
                              "labels": self.labels(role), "init": True, "detach": True, **kwargs}
        if command is not None:
            kw["command"] = command
        if network_mode_host:
            kw["network_mode"] = "host"
        else:
            from docker.types import EndpointConfig

            kw["network"] = self.network_name
            kw["networking_config"] = {self.network_name: EndpointConfig(self._client.api.api_version,
                                                                         aliases=[alias])}
            kw["ports"] = {f"{cport}/tcp": ("127.0.0.1", hport) for cport, hport in ports.items()}
        container = self._client.containers.create(image, **kw)
        self._exit.callback(self._remove_container, container)
        if before_start is not None:
            before_start(container)
        if files:
            container.put_archive("/", files_tar(files))
        container.start()
        return container

    @staticmethod
    def _remove_container(container: Any) -> None:
        try:
            container.reload()
            if container.status == "paused":
                container.unpause()
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - _remove_everything catches what this misses
            pass

    def _rabbitmq(self) -> ContainerServer:
        o = self.options
        user, password = f"chaos-{self.run_id}", secrets.token_urlsafe(18)
        port = free_port()
        env = {"RABBITMQ_DEFAULT_USER": user, "RABBITMQ_DEFAULT_PASS": password,
               "CHAOS_RABBITMQ_MANAGEMENT": "1" if o.rabbitmq_management else "0"}
        image = self.images[Service.RABBITMQ].image

        def check_settings(container: Any) -> None:
            # Against the RabbitMQ of this image (its own schema files), before it boots.
            if o.rabbitmq:
                t0 = time.monotonic()
                image_schema(container, management=o.rabbitmq_management).check(o.rabbitmq)
                self.timings["rabbitmq_settings_check"] = time.monotonic() - t0

        c = self._container("broker", image, alias="broker", ports={5672: port}, env=env, hostname="broker",
                            files=container_files(o.rabbitmq), before_start=check_settings)
        self._credentials["broker"] = f"amqp://{user}:{password}@127.0.0.1:{port}//"
        return ContainerRabbitMQ(
            "rabbitmq", lambda: c, amqp_probe("127.0.0.1", user, password), host_port=port,
            container_port=5672, network_host="broker", startup_timeout=o.startup_timeout,
            what=f"an AMQP connection to 127.0.0.1:{port} as {user}",
            hint=(f"Check the image {image} starts RabbitMQ on 5672 and honours "
                  "RABBITMQ_DEFAULT_USER/PASS (the official image and chaos/rabbitmq:local do)."),
            settings=o.rabbitmq)

    def _redis(self, role: str, *, aof: bool) -> ContainerServer:
        password = secrets.token_urlsafe(18)
        port = free_port()
        cmd = ["redis-server", "--requirepass", password, "--bind", "0.0.0.0", "--protected-mode", "no",
               "--dir", "/data", "--save", ""]
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        image = self.images[Service.REDIS].image
        c = self._container(role, image, alias=role, ports={6379: port}, env={}, command=cmd)
        self._credentials[role] = f"redis://:{password}@127.0.0.1:{port}/0"
        return ContainerServer(
            f"redis-{role}", lambda: c, redis_probe("127.0.0.1", password), host_port=port,
            container_port=6379, network_host=role, startup_timeout=self.options.startup_timeout, what=f"AUTH + PING answered on 127.0.0.1:{port}",
            hint=f"Check the image {image} runs redis-server with the command line it is given.")

    def _start_toxiproxy(self) -> None:
        o = self.options
        image = self.images[Service.TOXIPROXY].image
        if o.proxy_network == "host":
            api = free_port()
            c = self._container("toxiproxy", image, alias="toxiproxy", ports={}, env={},
                                command=["-host=127.0.0.1", f"-port={api}"], network_mode_host=True)
        else:
            api = free_port()
            count = len(Role) + o.spare_proxies
            self._proxy_ports = {_PROXY_BASE_PORT + i: free_port() for i in range(count)}
            self._free_proxy_ports = sorted(self._proxy_ports)
            c = self._container("toxiproxy", image, alias="toxiproxy",
                                ports={_TOXIPROXY_API: api, **self._proxy_ports}, env={},
                                command=["-host=0.0.0.0", f"-port={_TOXIPROXY_API}"])
        self._toxiproxy_container = c
        client = ToxiproxyClient(f"http://127.0.0.1:{api}")
        wait_ready("toxiproxy", c, client.version, timeout=o.startup_timeout,
                    what=f"GET /version on 127.0.0.1:{api}",
                    hint=f"Check the image {image} takes toxiproxy-server's flags (-host, -port).")
        self.toxiproxy = client

    def _make_proxy(self, name: str, role: Role, upstream: str, template: str | None) -> ProxiedEndpoint:
        assert self.toxiproxy is not None
        if self.options.proxy_network == "host":
            info = self.toxiproxy.create_proxy(name, upstream, listen="127.0.0.1:0")
            host_port = info.listen_port
        else:
            if not self._free_proxy_ports:
                raise ConfigError(
                    f"no spare proxy port left for {name!r}: the stack publishes {len(self._proxy_ports)} proxy "
                    "ports; build it with a larger spare_proxies=")
            cport = self._free_proxy_ports.pop(0)
            self.toxiproxy.create_proxy(name, upstream, listen=f"0.0.0.0:{cport}")
            host_port = self._proxy_ports[cport]
        url = with_hostport(template, "127.0.0.1", host_port) if template else f"http://127.0.0.1:{host_port}"
        return ProxiedEndpoint(role=role, proxy_name=name, listen_host="127.0.0.1", listen_port=host_port,
                               upstream=upstream, url=url)

    def _upstream(self, server: ContainerServer) -> str:
        if self.options.proxy_network == "host":
            return server.address
        return f"{server.network_host}:{server.container_port}"

    def _make_urls(self) -> StackURLs:
        assert self._broker is not None and self._backend is not None and self.toxiproxy is not None
        broker_url, backend_url = self._credentials["broker"], self._credentials["backend"]
        proxied = {}
        for role in Role:
            server = self._broker if role.is_broker else self._backend
            template = broker_url if role.is_broker else backend_url
            proxied[role] = self._make_proxy(role.proxy_name, role, self._upstream(server), template)
        return StackURLs(broker_url=broker_url, backend_url=backend_url, toxiproxy_url=self.toxiproxy.url,
                         proxied=proxied, broker_kind="amqp" if self.options.broker == "rabbitmq" else "redis")

    def add_proxy(self, name: str, upstream: str) -> ProxiedEndpoint:
        """Route another dependency (a partner API, a database) through the fault proxy.

        `upstream` is host:port: a container on the stack's network by name, or a service on the
        host's loopback (127.0.0.1:PORT). In bridge mode the Toxiproxy container cannot reach the
        host's loopback, so a plain relay (the same Toxiproxy image, on the host's network, no
        toxics) listens on the stack network's gateway address and forwards to it; faults still
        act on this proxy, in the stack's Toxiproxy.

        Adding a name again re-points that proxy at the new upstream (same port).

        Example: ``ep = stack.add_proxy("partner_api", "127.0.0.1:8099")`` then call ``ep.url``.
        """
        if self._urls is None:
            raise HarnessError("the stack is not started: call start() first")
        if name in {r.proxy_name for r in Role}:
            raise ConfigError(f"{name!r} is the name of a role's proxy; pick another name for an extra proxy")
        host = upstream.rsplit(":", 1)[0].strip("[]")
        if self.options.proxy_network == "bridge" and host in ("127.0.0.1", "localhost", "::1"):
            upstream = self._relay_to_host(name, upstream)
        existing = self._extra.get(name)
        if existing is not None:
            # Re-pointing a dependency (a fresh partner API for the next scenario) keeps the proxy's
            # name and port, so faults and clients configured with it keep working (as LocalStack).
            assert self.toxiproxy is not None
            if existing.upstream != upstream:
                self.toxiproxy.update_proxy(existing.proxy_name, upstream=upstream)
            ep = ProxiedEndpoint(existing.role, existing.proxy_name, existing.listen_host, existing.listen_port,
                                 upstream, existing.url)
        else:
            ep = self._make_proxy(name, Role.PRODUCER_BROKER, upstream, None)
        self._extra[name] = ep
        return ep

    def _relay_to_host(self, name: str, upstream: str) -> str:
        """An upstream the Toxiproxy container can dial that reaches `upstream` on the host's loopback."""
        if self._relay is None:
            image = self.images[Service.TOXIPROXY].image
            api = free_port()
            c = self._container("hostrelay", image, alias="hostrelay", ports={}, env={},
                                command=["-host=127.0.0.1", f"-port={api}"], network_mode_host=True)
            client = ToxiproxyClient(f"http://127.0.0.1:{api}")
            wait_ready("host relay", c, client.version,
                        timeout=self.options.startup_timeout, what=f"GET /version on 127.0.0.1:{api}",
                        hint=f"Check the image {image} takes toxiproxy-server's flags (-host, -port).")
            self._relay = client
        net = self._client.networks.get(self.network_name)
        gateway = str(net.attrs["IPAM"]["Config"][0]["Gateway"])
        target = f"127.0.0.1:{upstream.rsplit(':', 1)[1]}"
        relay_name = f"relay-{name}"
        current = self._relay.proxies().get(relay_name)
        if current is not None:
            if current.upstream != target:
                self._relay.update_proxy(relay_name, upstream=target)
            return f"{gateway}:{current.listen_port}"
        info = self._relay.create_proxy(relay_name, target, listen=f"{gateway}:0")
        return f"{gateway}:{info.listen_port}"

    def stop(self) -> None:
        """Remove every container, network and volume this stack made; safe to call twice."""
        self._exit.close()
        self._urls = None

    def _remove_everything(self) -> None:
        if self._network is not None and self._own_network:
            try:
                self._network.remove()
            except Exception:  # noqa: BLE001 - remove_run tries again by label
                pass
        client = self._client
        if client is None:
            return
        problems = remove_run(client, self.run_id)
        left = leftovers(client, self.run_id)
        if problems or any(left.values()):
            print(f"celery-chaos: could not remove all of run {self.run_id}: {problems or left}; remove them with "
                  f"`docker rm -f $(docker ps -aq --filter label={LABEL_RUN}={self.run_id})`", file=sys.stderr)

    # -- accessors ------------------------------------------------------------------------------
    @property
    def broker(self) -> ContainerServer | None:
        return self._broker

    @property
    def backend(self) -> ContainerServer | None:
        return self._backend

    @property
    def network(self) -> Any:
        """The stack's Docker network (testcontainers' object; None before start)."""
        return self._network

    @property
    def network_name(self) -> str:
        return str(self._network.name) if self._network is not None else f"chaos-{self.run_id}"

    def containers(self) -> list[str]:
        """Names of this run's containers (workers included) that exist now."""
        if self._client is None:
            return []
        return leftovers(self._client, self.run_id)["containers"]

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this run that still exist (all empty after stop())."""
        client = docker_client(timeout=30)
        try:
            return leftovers(client, self.run_id)
        finally:
            client.close()

    def temp_dirs(self) -> list[str]:
        """This stack makes no host directories (its data lives in the containers)."""
        return []

    def pids(self) -> list[int]:
        """Host pids of the containers' init processes while they run (for leak checks)."""
        out: list[int] = []
        for server in (self._broker, self._backend):
            if server is not None:
                try:
                    out.extend(server.pids)
                except Exception:  # noqa: BLE001 - a removed container has no pid
                    pass
        if self._toxiproxy_container is not None:
            try:
                c = self._toxiproxy_container
                c.reload()
                pid = int(c.attrs.get("State", {}).get("Pid") or 0)
                if pid:
                    out.append(pid)
            except Exception:  # noqa: BLE001
                pass
        return out

    def describe(self) -> dict[str, object]:
        """URLs plus what ran where: images (and why each was chosen), containers, run id."""
        return {**self.urls.to_json(), "provider": self.provider, "run_id": self.run_id,
                "network": self.network_name, "containers": self.containers(),
                "images": {s.value: {"image": r.image, "source": r.source, "note": r.note}
                           for s, r in self.images.items()}}

    # -- workers in containers (harness.workers.container) -------------------------------------
    def worker_urls(self) -> tuple[str, str]:
        """The worker-role broker and backend URLs as a worker *container* sees them."""
        urls = self.urls
        if self.options.proxy_network == "host":
            return urls.url_for(Role.WORKER_BROKER), urls.url_for(Role.WORKER_BACKEND)
        by_host = {cport: hport for cport, hport in self._proxy_ports.items()}
        inside = {hport: cport for cport, hport in by_host.items()}
        wb, wk = urls.proxied[Role.WORKER_BROKER], urls.proxied[Role.WORKER_BACKEND]
        host = f"chaos-{self.run_id}-toxiproxy"  # the container's name resolves on its network
        return (with_hostport(wb.url, host, inside[wb.listen_port]),
                with_hostport(wk.url, host, inside[wk.listen_port]))
