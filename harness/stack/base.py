"""The stack's contract: endpoints handed to clients and the controls a fault may use.

Responsibility: describe a running broker + result backend + fault proxy as plain data
(`StackURLs`) and the `Stack` protocol every provider implements (local processes,
containers, external URLs): lifecycle, URLs, the fault proxy and its extra proxies, process
control, and what the stack can do (`capabilities`, `require`: the one place that says what
a stack without a capability cannot do, and how to get it).

A new provider: a class on `StackLifecycle` in ``harness/stack/<name>.py`` with every member of
`Stack`, a branch in `harness.stack.open_stack`, and the provider's tests
(``tests/stack/test_protocol.py`` checks the members).

Example:
    >>> urls = StackURLs(broker_url="amqp://u:p@127.0.0.1:5672//", backend_url="redis://:p@127.0.0.1:6379/0",
    ...                  toxiproxy_url="http://127.0.0.1:8474", proxied={})
    >>> urls.broker_for(Role.WORKER_BROKER)
    'amqp://u:p@127.0.0.1:5672//'
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from harness.errors import UnsupportedFault

if TYPE_CHECKING:
    from harness.toxiproxy.client import ToxiproxyClient


class Role(enum.Enum):
    """A client role with its own proxy, so a fault can cut one role only."""

    PRODUCER_BROKER = "producer_broker"
    WORKER_BROKER = "worker_broker"
    PRODUCER_BACKEND = "producer_backend"
    WORKER_BACKEND = "worker_backend"

    @property
    def proxy_name(self) -> str:
        """The Toxiproxy proxy name for this role (stable across providers)."""
        return self.value

    @property
    def is_broker(self) -> bool:
        return self in (Role.PRODUCER_BROKER, Role.WORKER_BROKER)


@dataclass(frozen=True, slots=True)
class ProxiedEndpoint:
    """One role's proxy: where clients connect (`listen`) and what it forwards to (`upstream`)."""

    role: Role
    proxy_name: str
    listen_host: str
    listen_port: int
    upstream: str
    url: str


@dataclass(frozen=True, slots=True)
class StackURLs:
    """Everything a client needs to reach the stack, directly or through a role's proxy."""

    broker_url: str
    backend_url: str
    toxiproxy_url: str
    proxied: dict[Role, ProxiedEndpoint] = field(default_factory=dict)
    broker_kind: str = "amqp"
    #: A cluster's per-node proxies of a role (its `proxied` URL lists them all): a fault on the
    #: role acts on every one of them.
    node_proxies: dict[Role, tuple[ProxiedEndpoint, ...]] = field(default_factory=dict)

    def url_for(self, role: Role) -> str:
        """The URL a client of `role` should use: through its proxy when there is one."""
        ep = self.proxied.get(role)
        if ep is not None:
            return ep.url
        return self.broker_url if role.is_broker else self.backend_url

    broker_for = url_for
    backend_for = url_for

    def to_json(self) -> dict[str, object]:
        return {
            "broker_url": self.broker_url,
            "backend_url": self.backend_url,
            "toxiproxy_url": self.toxiproxy_url,
            "broker_kind": self.broker_kind,
            "proxied": {
                r.value: {"proxy": e.proxy_name, "listen": f"{e.listen_host}:{e.listen_port}",
                          "upstream": e.upstream, "url": e.url}
                for r, e in self.proxied.items()
            },
            **({"node_proxies": {r.value: [{"proxy": e.proxy_name, "listen": f"{e.listen_host}:{e.listen_port}",
                                            "upstream": e.upstream} for e in eps]
                                 for r, eps in self.node_proxies.items()}} if self.node_proxies else {}),
        }


@runtime_checkable
class ServerControl(Protocol):
    """Process-level control of one server of the stack (broker or backend)."""

    name: str

    def kill(self) -> None:
        """SIGKILL the server; its data stays on disk."""

    def stop(self) -> None:
        """Graceful stop."""

    def start(self) -> object:
        """Start again (same port, same credentials, same data) and wait until ready."""

    def restart(self) -> None:
        """stop() then start(), keeping data."""

    def is_running(self) -> bool: ...


@runtime_checkable
class Stack(Protocol):
    """A running broker + backend + fault proxy. Use as a context manager.

    - ``provider``: "local", "containers" or "external";
    - ``urls``: what clients connect to (direct and per-role proxied);
    - ``toxiproxy``: the fault proxy's client, None when the stack has none (external without
      ``--toxiproxy-url``);
    - ``extra_proxies`` / ``add_proxy``: proxies for other dependencies (a partner API);
    - ``broker`` / ``backend``: process control, None for providers that cannot control the
      servers (external); faults needing it raise UnsupportedFault (`require`);
    - ``pids`` / ``temp_dirs``: what the stack runs and wrote now, for leak checks.

    >>> from harness.stack.local import LocalStack
    >>> stack = LocalStack()                       # built, not started
    >>> stack.provider, stack.pids(), stack.extra_proxies
    ('local', [], {})
    """

    provider: str
    toxiproxy: ToxiproxyClient | None

    @property
    def urls(self) -> StackURLs: ...

    @property
    def extra_proxies(self) -> dict[str, ProxiedEndpoint]: ...

    def add_proxy(self, name: str, upstream: str) -> ProxiedEndpoint: ...

    def start(self) -> Self: ...

    def stop(self) -> None: ...

    @property
    def broker(self) -> ServerControl | None: ...

    @property
    def backend(self) -> ServerControl | None: ...

    def pids(self) -> list[int]: ...

    def temp_dirs(self) -> list[str]: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


#: capability -> the rest of the sentence "<what> ..." when a stack lacks it: the fix included.
CAPABILITIES: Mapping[str, str] = {
    "fault_proxy": "need a fault proxy, and this stack has none: start it with a Toxiproxy (the local stack always "
                   "has one; the external stack needs --toxiproxy-url)",
    "process_control": "needs to kill or restart a server, but the {provider} stack did not start it and cannot "
                       "control it. Use --stack=local (or containers), or choose a network fault instead.",
    "rabbitmqctl": "needs a RabbitMQ broker the harness runs (it calls rabbitmqctl): use the local or containers "
                   "stack with broker='rabbitmq'",
    "cluster": "needs a RabbitMQ cluster: start the local stack with topology='cluster' (certify --topology "
               "cluster), or the containers stack with ContainerStackOptions(topology='cluster')",
}


def capabilities(stack: Stack) -> frozenset[str]:
    """What `stack` can do, out of `CAPABILITIES`.

    >>> from types import SimpleNamespace
    >>> sorted(capabilities(SimpleNamespace(toxiproxy=object(), broker=None, backend=None)))
    ['fault_proxy']
    """
    out = set()
    if stack.toxiproxy is not None:
        out.add("fault_proxy")
    # The broker decides: a stack attached to a pytest-celery setup may have no backend to control.
    if stack.broker is not None:
        out.add("process_control")
        if callable(getattr(stack.broker, "ctl", None)):
            out.add("rabbitmqctl")
        if len(getattr(stack.broker, "labels", ())) > 1:
            out.add("cluster")
    return frozenset(out)


def require(stack: Stack, capability: str, what: str) -> None:
    """Raise UnsupportedFault naming the fix when `stack` lacks `capability` for `what`.

    >>> from types import SimpleNamespace
    >>> external = SimpleNamespace(provider="external", toxiproxy=None, broker=None, backend=None)
    >>> require(external, "process_control", "broker_outage(mode='kill_restart')")
    Traceback (most recent call last):
    ...
    harness.errors.UnsupportedFault: broker_outage(mode='kill_restart') needs to kill or restart a server, but the external stack did not start it and cannot control it. Use --stack=local (or containers), or choose a network fault instead.
    """
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}: one of {', '.join(CAPABILITIES)}")
    if capability not in capabilities(stack):
        raise UnsupportedFault(f"{what} {CAPABILITIES[capability].format(provider=stack.provider)}")


class StackLifecycle:
    """What every provider shares: context-manager use, URLs once started, the extra proxies.

    A provider sets ``self._urls`` in `start` (None again after `stop`) and keeps the proxies
    it added for other dependencies in ``self._extra``.

    Example::

        with LocalStack() as stack:          # start() on entry, stop() on exit, even on error
            print(stack.urls.broker_url)
    """

    _urls: StackURLs | None = None
    _extra: dict[str, ProxiedEndpoint]

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def urls(self) -> StackURLs:
        if self._urls is None:
            raise RuntimeError("the stack is not started: call start() or use it as a context manager")
        return self._urls

    @property
    def extra_proxies(self) -> dict[str, ProxiedEndpoint]:
        """Proxies added with ``add_proxy`` for dependencies other than broker and backend, by name."""
        return dict(self._extra)
