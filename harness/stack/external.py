"""A stack the user runs: broker, backend and Toxiproxy given as URLs.

Responsibility: hand out the user's URLs (and per-role proxies when a Toxiproxy URL is given)
through the same interface as the local stack. It did not start the servers, so it cannot
kill them: process-level faults raise UnsupportedFault with the reason.

Example:
    >>> stack = ExternalStack(broker_url="amqp://u:p@127.0.0.1:5672//",
    ...                       backend_url="redis://127.0.0.1:6379/0")
    >>> stack.broker is None
    True
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from harness.errors import ConfigError
from harness.stack.base import ProxiedEndpoint, Role, StackLifecycle, StackURLs
from harness.toxiproxy.client import ToxiproxyClient


def _hostport(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ConfigError(f"URL {url!r} needs an explicit host and port, e.g. amqp://user:pass@127.0.0.1:5672//")
    return f"{parts.hostname}:{parts.port}"


class ExternalStack(StackLifecycle):
    """URLs of servers the user runs. Implements harness.stack.base.Stack (without process control)."""

    provider = "external"

    def __init__(self, broker_url: str | None = None, backend_url: str | None = None,
                 toxiproxy_url: str | None = None) -> None:
        self.broker_url = broker_url or os.environ.get("CHAOS_BROKER_URL", "")
        self.backend_url = backend_url or os.environ.get("CHAOS_BACKEND_URL", "")
        self.toxiproxy_url = toxiproxy_url or os.environ.get("TOXIPROXY_URL", "")
        if not self.broker_url or not self.backend_url:
            raise ConfigError(
                "the external stack needs --broker-url and --backend-url (or CHAOS_BROKER_URL and "
                "CHAOS_BACKEND_URL); add --toxiproxy-url (or TOXIPROXY_URL) to inject network faults")
        self.toxiproxy: ToxiproxyClient | None = None
        self._urls: StackURLs | None = None
        self._extra: dict[str, ProxiedEndpoint] = {}
        self._created: list[str] = []

    def start(self) -> ExternalStack:
        proxied: dict[Role, ProxiedEndpoint] = {}
        if self.toxiproxy_url:
            client = self.toxiproxy = ToxiproxyClient(self.toxiproxy_url)
            client.wait_ready(timeout=10)
            for role in Role:
                url = self.broker_url if role.is_broker else self.backend_url
                name = f"chaos-ext-{role.value}"
                existing = client.proxies().get(name)
                if existing is not None:
                    client.delete_proxy(name)
                info = client.create_proxy(name, _hostport(url), listen="127.0.0.1:0")
                self._created.append(name)
                host = "127.0.0.1" if info.listen_host in ("[::]", "0.0.0.0") else info.listen_host
                parts = urlsplit(url)
                netloc = parts.netloc.rsplit("@", 1)
                creds = f"{netloc[0]}@" if len(netloc) == 2 else ""
                proxied[role] = ProxiedEndpoint(role, name, host, info.listen_port, _hostport(url),
                                                parts._replace(netloc=f"{creds}{host}:{info.listen_port}").geturl())
        kind = "amqp" if self.broker_url.startswith(("amqp", "pyamqp")) else "redis"
        self._urls = StackURLs(self.broker_url, self.backend_url, self.toxiproxy_url, proxied, kind)
        return self

    def stop(self) -> None:
        if self.toxiproxy is not None:
            for name in self._created:
                try:
                    self.toxiproxy.delete_proxy(name)
                except Exception:  # noqa: BLE001 - teardown must go on
                    pass
        self._created.clear()
        self._extra.clear()

    @property
    def broker(self) -> None:
        return None

    @property
    def backend(self) -> None:
        return None

    def add_proxy(self, name: str, upstream: str) -> ProxiedEndpoint:
        """Route another dependency (``host:port``) through the user's Toxiproxy (``chaos-ext-<name>``).

        Adding a name again re-points that proxy at the new upstream (same port). Without a
        Toxiproxy there is nothing to route through: a ConfigError naming the fix.
        """
        if self.toxiproxy is None:
            raise ConfigError(f"stack.add_proxy({name!r}, ...) routes a dependency through the fault proxy, and this "
                              "external stack has none: pass --toxiproxy-url (or TOXIPROXY_URL)")
        existing = self._extra.get(name)
        if existing is not None:
            self.toxiproxy.update_proxy(existing.proxy_name, upstream=upstream)
            ep = ProxiedEndpoint(existing.role, existing.proxy_name, existing.listen_host, existing.listen_port,
                                 upstream, existing.url)
        else:
            proxy = f"chaos-ext-{name}"
            if self.toxiproxy.proxies().get(proxy) is not None:
                self.toxiproxy.delete_proxy(proxy)  # a leftover of an earlier run: ours by name
            info = self.toxiproxy.create_proxy(proxy, upstream, listen="127.0.0.1:0")
            self._created.append(proxy)
            host = "127.0.0.1" if info.listen_host in ("[::]", "0.0.0.0") else info.listen_host
            # The role is a placeholder for an extra proxy, as on the local stack.
            ep = ProxiedEndpoint(Role.PRODUCER_BROKER, proxy, host, info.listen_port, upstream, f"http://{host}:{info.listen_port}")
        self._extra[name] = ep
        return ep

    def pids(self) -> list[int]:
        """The external stack runs no process of its own."""
        return []

    def temp_dirs(self) -> list[str]:
        """The external stack writes no directory of its own."""
        return []
