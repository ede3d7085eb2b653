"""The bridge to pytest-celery: the harness's fault proxy and server controls on a `celery_setup`.

Responsibility: `CelerySetupStack` / `attach_to_celery_setup`: one Toxiproxy container on the
setup's Docker network in front of its broker and backend containers, which pytest-celery
keeps owning.

Example:
    >>> def test_broker_outage(celery_setup):                                  # doctest: +SKIP
    ...     with attach_to_celery_setup(celery_setup) as stack:
    ...         stack.apply_to(celery_setup.app)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.errors import ConfigError
from harness.images.engine import docker_client
from harness.images.names import Service
from harness.images.resolve import resolve_images
from harness.stack.base import Role, StackURLs
from harness.stack.containers.options import ContainerStackOptions
from harness.stack.containers.servers import (
    ContainerRabbitMQ,
    ContainerServer,
    amqp_probe,
    redis_probe,
    with_hostport,
)
from harness.stack.containers.stack import ContainerStack, ryuk_off

__all__ = ["CelerySetupStack", "attach_to_celery_setup"]


class _JoinedNetwork:
    """Someone else's Docker network, joined by name (testcontainers needs only `.name`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def remove(self) -> None:  # never ours to remove
        pass


class CelerySetupStack(ContainerStack):
    """The harness's fault proxy and server controls added to a pytest-celery `celery_setup`.

    Starts one Toxiproxy container on the setup's Docker network, one proxy per client role
    in front of its broker and backend containers (upstreams by container name), and wraps
    those containers as ServerControls (kill/start/pause, as for the containers stack).
    pytest-celery keeps owning its containers; stop() removes only the proxy container.

    The producer side is the test's own app: `apply_to(celery_setup.app)` points it at the
    producer-role proxies. pytest-celery's worker containers were given their URLs when they
    were created; `worker_urls()` gives the worker-role proxy URLs to put in their config
    (for example by overriding the `default_worker_env` fixture).

    Example:
        >>> def test_broker_outage(celery_setup):                                  # doctest: +SKIP
        ...     with attach_to_celery_setup(celery_setup) as stack:
        ...         stack.apply_to(celery_setup.app)
        ...         stack.broker.kill(); stack.broker.start()
    """

    provider = "pytest-celery"

    def __init__(self, celery_setup: Any, options: ContainerStackOptions | None = None, **given: Any) -> None:
        super().__init__(options, **given)
        # The proxy joins the setup's network and dials its containers by alias: their published
        # ports may change when pytest-celery (or a fault) restarts them.
        self.options = replace(self.options, proxy_network="bridge")
        if getattr(celery_setup, "broker", None) is None:
            raise ConfigError("this celery_setup has no broker node; the harness needs at least a broker to proxy")
        self._setup = celery_setup

    def _start(self) -> None:
        o = self.options
        self._client = docker_client()
        self._exit.callback(self._client.close)
        self._exit.callback(self._remove_everything)
        ryuk_off()
        self.images = resolve_images([Service.TOXIPROXY], mode=o.image_mode, overrides=o.overrides,
                                     pull_timeout=o.pull_timeout, client=self._client)
        broker = self._node_server(self._setup.broker, "broker")
        networks = list(broker.container.attrs.get("NetworkSettings", {}).get("Networks", {}))
        if not networks:
            raise ConfigError(f"the broker container {broker.container_name} is on no Docker network")
        self._network, self._own_network = _JoinedNetwork(networks[0]), False
        self._broker = broker
        backend = getattr(self._setup, "backend", None)
        self._backend = self._node_server(backend, "backend") if backend is not None else None
        self._start_toxiproxy()
        self._urls = self._make_urls()

    def _node_server(self, node: Any, role: str) -> ContainerServer:
        """A ServerControl over a pytest-celery node's container (RabbitMQ or Redis, told by its port)."""
        from urllib.parse import urlsplit

        wrapper = node.container
        sdk = wrapper._container  # pytest_docker_tools keeps the docker SDK container here
        sdk.reload()
        ports = sdk.attrs.get("NetworkSettings", {}).get("Ports") or {}
        url = str(node.config().get("host_url") or "")
        parts = urlsplit(url)
        if "5672/tcp" in ports:
            probe = amqp_probe("127.0.0.1", parts.username or "guest", parts.password or "guest")
            cport, what = 5672, "an AMQP connection"
        elif "6379/tcp" in ports:
            probe, cport, what = redis_probe("127.0.0.1", parts.password), 6379, "PING answered"
        else:
            raise ConfigError(f"the {role} container {sdk.name} publishes neither 5672 (RabbitMQ) nor 6379 (Redis): "
                              f"{sorted(ports)}; the harness can proxy only those")

        def current() -> Any:
            return wrapper._container

        # pytest_docker_tools' containers are reachable on their network by alias (the short id),
        # not always by name.
        nets = list((sdk.attrs.get("NetworkSettings", {}).get("Networks") or {}).values())
        aliases = [a for n in nets for a in (n.get("Aliases") or [])]
        cls = ContainerRabbitMQ if cport == 5672 else ContainerServer
        server = cls(f"{role} ({sdk.name})", current, probe, container_port=cport,
                                 network_host=str(aliases[0] if aliases else sdk.name), startup_timeout=self.options.startup_timeout,
                                 what=what, hint="pytest-celery owns this container; see its logs.")
        self._credentials[role] = with_hostport(url, "127.0.0.1", server.host_port) if url else ""
        return server

    def _make_urls(self) -> StackURLs:
        assert self._broker is not None and self.toxiproxy is not None
        broker_url, backend_url = self._credentials["broker"], self._credentials.get("backend", "")
        proxied = {}
        for role in Role:
            server = self._broker if role.is_broker else self._backend
            if server is None:
                continue
            template = broker_url if role.is_broker else backend_url
            proxied[role] = self._make_proxy(role.proxy_name, role, self._upstream(server), template)
        kind = "amqp" if broker_url.startswith(("amqp", "pyamqp")) else "redis"
        return StackURLs(broker_url=broker_url, backend_url=backend_url, toxiproxy_url=self.toxiproxy.url,
                         proxied=proxied, broker_kind=kind)

    def apply_to(self, app: Any) -> None:
        """Point a host-side Celery app (the producer) at the producer-role proxies."""
        urls = self.urls
        update = {"broker_url": urls.url_for(Role.PRODUCER_BROKER)}
        if Role.PRODUCER_BACKEND in urls.proxied:
            update["result_backend"] = urls.url_for(Role.PRODUCER_BACKEND)
        app.close()  # drop pooled connections to the old URLs
        app.conf.update(update)
        try:
            del app._local.backend  # Celery caches the result backend per thread
        except AttributeError:
            pass


def attach_to_celery_setup(celery_setup: Any, **options: Any) -> CelerySetupStack:
    """Add the harness's proxy and server controls to a pytest-celery `celery_setup` (not started yet).

    Use it as a context manager inside the test; options are ContainerStackOptions fields
    (toxiproxy_image, images, startup_timeout, spare_proxies, ...).
    """
    return CelerySetupStack(celery_setup, **options)
