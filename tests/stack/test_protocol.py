"""Every stack provider has every member of the `Stack` protocol, and capabilities are decided in one place."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from harness.errors import UnsupportedFault
from harness.stack.base import CAPABILITIES, Stack, capabilities, require
from harness.stack.containers import ContainerStack
from harness.stack.external import ExternalStack
from harness.stack.local import LocalStack


def _protocol_members() -> set[str]:
    names = {n for n in vars(Stack) if not n.startswith("_") or n in ("__enter__", "__exit__")}
    names |= set(Stack.__annotations__)
    return names - {"_is_protocol", "_is_runtime_protocol"}


def _unstarted() -> list[Any]:
    # Built, not started: nothing runs, and the members must exist all the same.
    return [LocalStack(), ExternalStack(broker_url="amqp://g:g@127.0.0.1:5672//", backend_url="redis://127.0.0.1:6379/0"),
            ContainerStack()]


@pytest.mark.parametrize("stack", _unstarted(), ids=lambda s: type(s).__name__)
def test_every_provider_has_every_member_of_the_protocol(stack: Any) -> None:
    missing = sorted(n for n in _protocol_members() if not (hasattr(type(stack), n) or n in vars(stack)))
    assert not missing, f"{type(stack).__name__} lacks {missing} of harness.stack.base.Stack"
    assert stack.provider in ("local", "containers", "external")


def test_capabilities_name_the_fix() -> None:
    external = SimpleNamespace(provider="external", toxiproxy=None, broker=None, backend=None)
    assert capabilities(external) == frozenset()
    for cap in CAPABILITIES:
        with pytest.raises(UnsupportedFault, match="needs? "):
            require(external, cap, "this fault")
    rabbit = SimpleNamespace(provider="local", toxiproxy=object(), broker=SimpleNamespace(ctl=lambda *a: ""),
                             backend=object())
    assert capabilities(rabbit) == {"fault_proxy", "process_control", "rabbitmqctl"}
    with pytest.raises(ValueError, match="unknown capability"):
        require(rabbit, "teleport", "x")


def test_the_external_stack_cannot_add_a_proxy_without_a_fault_proxy() -> None:
    from harness.errors import ConfigError

    stack = ExternalStack(broker_url="amqp://g:g@127.0.0.1:5672//", backend_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="--toxiproxy-url"):
        stack.add_proxy("partner_api", "127.0.0.1:9")


def test_the_external_stack_routes_a_dependency_through_the_users_fault_proxy(chaos_stack: Any) -> None:
    import socket

    urls = chaos_stack.urls
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        port = upstream.getsockname()[1]
        with ExternalStack(broker_url=urls.broker_url, backend_url=urls.backend_url,
                           toxiproxy_url=urls.toxiproxy_url) as stack:
            ep = stack.add_proxy("partner_api", f"127.0.0.1:{port}")
            assert stack.extra_proxies["partner_api"] == ep and ep.proxy_name == "chaos-ext-partner_api"
            with socket.create_connection((ep.listen_host, ep.listen_port), timeout=5):
                conn, _ = upstream.accept()  # the proxy forwarded the connection
                conn.close()
            assert stack.add_proxy("partner_api", f"127.0.0.1:{port}").listen_port == ep.listen_port
        assert "chaos-ext-partner_api" not in chaos_stack.toxiproxy.proxies()
