"""The reference Celery system the harness certifies: orders, payments, security scans, notifications.

Responsibility: the public surface - `Settings` (every reliability knob), `make_app` (an app
for given settings) and ``sample_system.app``, the app ``celery -A sample_system worker`` runs,
built from ``SAMPLE_*`` environment variables the first time it is looked up (not at import).

Example:
    >>> from sample_system import Settings, make_app
    >>> app = make_app(Settings(rate_limit="5/s"))
    >>> sorted(t for t in app.tasks if t.startswith("orders."))
    ['orders.confirm', 'orders.reserve_inventory', 'orders.validate']
"""

from __future__ import annotations

from typing import Any

from sample_system.factory import make_app
from sample_system.settings import Settings

__all__ = ["Settings", "app", "make_app"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package never reads the environment; `celery -A sample_system`
    # looks up `sample_system.app` once, at worker start.
    if name == "app":
        built = make_app(Settings.from_env())
        globals()["app"] = built
        return built
    raise AttributeError(f"module 'sample_system' has no attribute {name!r}")
