"""Fixtures shared by every test package."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

# The shop's own chaos tests are the user's side of the pytest route: they run from the shop's
# project directory, in their own pytest process (tests/apps/test_apps_pytest_route.py).
collect_ignore = ["apps/shop_django/chaos_tests"]


@pytest.fixture()
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt for the test, even when the runner inherited it ignored.

    A process started in the background by a non-interactive shell (``cmd &`` in a CI script)
    inherits SIGINT as ignored, and then ``_thread.interrupt_main()`` does nothing: a Ctrl-C
    test would fail for a reason that has nothing to do with the code under test.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
