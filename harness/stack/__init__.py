"""Provisioning of broker, result backend and fault proxy behind one interface.

Example:
    >>> from harness.stack import open_stack
    >>> with open_stack("local") as stack:                  # doctest: +SKIP
    ...     print(stack.urls.url_for(Role.WORKER_BROKER))
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.stack.base import ProxiedEndpoint, Role, ServerControl, Stack, StackURLs

PROVIDERS = ("local", "containers", "external")


def open_stack(provider: str = "local", **options: Any) -> Stack:
    """Build (not start) a stack for `provider`; use it as a context manager.

    local:      options of LocalStackOptions (broker, redis_aof, startup_timeout, toxiproxy)
    external:   broker_url, backend_url, toxiproxy_url
    containers: see harness.stack.containers (needs Docker)

    >>> stack = open_stack("external", broker_url="amqp://guest:guest@127.0.0.1:5672//",
    ...                    backend_url="redis://127.0.0.1:6379/0")
    >>> stack.provider, stack.broker is None      # built, not started; no process control
    ('external', True)
    """
    if provider == "local":
        from harness.stack.local import LocalStack, LocalStackOptions

        return LocalStack(LocalStackOptions(**options))
    if provider == "external":
        from harness.stack.external import ExternalStack

        return ExternalStack(**options)
    if provider == "containers":
        try:
            from harness.stack.containers import ContainerStack  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError("the containers provider is not available in this version: use --stack=local") from exc
        return ContainerStack(**options)
    raise ConfigError(f"unknown stack provider {provider!r}: use one of {', '.join(PROVIDERS)}")


__all__ = ["PROVIDERS", "ProxiedEndpoint", "Role", "ServerControl", "Stack", "StackURLs", "open_stack"]
