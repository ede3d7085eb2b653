"""pytest plugin (entry point `celery_chaos`): stack options, a session-scoped stack, markers.

Example (a test in any project with the harness installed)::

    def test_round_trip(chaos_stack):
        broker = chaos_stack.urls.url_for(Role.PRODUCER_BROKER)
        ...

Options: --stack=local|containers|external, --broker-url, --backend-url, --toxiproxy-url,
--keep-stack (hold the stack up at the end of the session, printing its URLs, until Enter).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.stack.base import Stack, StackURLs

MARKERS = {
    "chaos": "a scenario that injects faults into real components",
    "soak": "long load-and-fault run; left out of `make test` (run with -m soak)",
    "containers": "needs Docker (the containers stack provider)",
    "slow": "takes more than ~30 s",
    "explore": "Hypothesis exploration of fault schedules; left out of `make test` (run with -m explore)",
    "full": "scenario of the full certification profile only; left out of `make test` (run with -m full)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("celery-chaos", "celery-chaos-harness")
    g.addoption("--stack", default=os.environ.get("CHAOS_STACK", "local"),
                choices=("local", "containers", "external"), help="stack provider (default: local)")
    g.addoption("--broker-url", default=None, help="external stack: broker URL")
    g.addoption("--backend-url", default=None, help="external stack: result backend URL")
    g.addoption("--toxiproxy-url", default=None, help="Toxiproxy API URL (external stack, or a real Toxiproxy)")
    g.addoption("--keep-stack", action="store_true", default=False,
                help="hold the stack up at the end of the session and print its URLs until Enter is pressed")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    # SIGTERM (CI cancelling, `timeout`) must run fixture teardown like Ctrl-C does.
    if hasattr(signal, "SIGTERM") and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, _term)


def build_stack(config: pytest.Config) -> Stack:
    """The stack the options ask for (not started)."""
    from harness.stack import open_stack

    provider = config.getoption("--stack")
    if provider == "external":
        return open_stack("external", broker_url=config.getoption("--broker-url"),
                          backend_url=config.getoption("--backend-url"),
                          toxiproxy_url=config.getoption("--toxiproxy-url"))
    if provider == "local":
        tp = config.getoption("--toxiproxy-url")
        return open_stack("local", **({"toxiproxy": tp} if tp else {}))
    return open_stack(provider)


@pytest.fixture(scope="session")
def chaos_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack for the whole session (servers start once; tests share it)."""
    stack = build_stack(request.config)
    with stack:
        yield stack
        if request.config.getoption("--keep-stack"):
            _hold(stack)


def _hold(stack: Stack) -> None:
    if not sys.stdin.isatty() or os.environ.get("CI"):
        print("\n--keep-stack ignored: no terminal to wait on (CI or non-interactive run)", file=sys.stderr)
        return
    import json

    print("\nstack kept up:\n" + json.dumps(stack.urls.to_json(), indent=2), file=sys.stderr)
    try:
        input("press Enter to tear it down... ")
    except (EOFError, KeyboardInterrupt):
        pass


@pytest.fixture(scope="session")
def chaos_urls(chaos_stack: Stack) -> StackURLs:
    """The session stack's StackURLs (direct and per-role proxied URLs)."""
    return chaos_stack.urls
