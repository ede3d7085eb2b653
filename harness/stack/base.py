"""The stack's contract: endpoints handed to clients and the controls a fault may use.

Responsibility: describe a running broker + result backend + fault proxy as plain data
(`StackURLs`) and a small lifecycle protocol (`Stack`), the same for every provider
(local processes, containers, external URLs).

Example:
    >>> urls = StackURLs(broker_url="amqp://u:p@127.0.0.1:5672//", backend_url="redis://:p@127.0.0.1:6379/0",
    ...                  toxiproxy_url="http://127.0.0.1:8474", proxied={})
    >>> urls.broker_for(Role.WORKER_BROKER)
    'amqp://u:p@127.0.0.1:5672//'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable


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
        }


@runtime_checkable
class ServerControl(Protocol):
    """Process-level control of one server of the stack (broker or backend)."""

    name: str

    def kill(self) -> None:
        """SIGKILL the server; its data stays on disk."""

    def stop(self) -> None:
        """Graceful stop."""

    def start(self) -> None:
        """Start again (same port, same credentials, same data) and wait until ready."""

    def restart(self) -> None:
        """stop() then start(), keeping data."""

    def is_running(self) -> bool: ...


@runtime_checkable
class Stack(Protocol):
    """A running broker + backend + fault proxy. Use as a context manager.

    `broker` and `backend` are None for providers that cannot control processes
    (the external provider); faults needing them raise UnsupportedFault.
    """

    urls: StackURLs

    def start(self) -> Stack: ...

    def stop(self) -> None: ...

    @property
    def broker(self) -> ServerControl | None: ...

    @property
    def backend(self) -> ServerControl | None: ...

    def __enter__(self) -> Stack: ...

    def __exit__(self, *exc: object) -> None: ...


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
