"""Which result backend a run uses: the app's own where the stack can, the stack's where it must.

Responsibility: one decision, as data. The chords, the results and the backend faults must be
the production ones: an app configured with ``db+sqlite://`` or ``rpc://`` keeps it (chords then
take Celery's ``chord_unlock`` path, as in production); a Redis backend is served by the stack's
Redis through the per-role fault proxies; a backend the stack cannot provide (PostgreSQL,
MongoDB ...) is replaced by the stack's Redis, and the plan says so in a sentence the report and
the terminal show. ``faults_apply`` tells whether backend faults act on what the app uses.

A stack that itself serves a ``db+sqlite://`` or ``rpc://`` backend (the local stack's
``result_backend`` option) names it in ``stack_backend``: an app configured with that URL gets
it with its faults (the SQLite file moved away or locked; for ``rpc://``, the broker's faults).

Example:
    >>> plan = plan_result_backend("db+sqlite:////tmp/results.db")
    >>> plan.keep_app_backend, plan.faults_apply
    (True, False)
    >>> plan_result_backend("redis://cache:6379/1").keep_app_backend
    False
    >>> plan_result_backend("rpc://", stack_backend="rpc://").faults_apply
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BackendPlan", "plan_for_app", "plan_result_backend"]

_STACK_SERVES = ("redis", "rediss")
_KEPT = {"db": "a SQLAlchemy database", "rpc": "the broker (rpc://)", "django-db": "Django's database",
         "file": "a file system path", "cache": "a cache"}


@dataclass(frozen=True, slots=True)
class BackendPlan:
    """What the run does with the app's result backend, and the sentence that says so."""

    app_backend: str  # the scheme the app names ("" when it has none)
    keep_app_backend: bool  # the workers and the producer keep the app's own setting
    faults_apply: bool  # backend faults act on the backend the app really uses
    note: str  # "" when the app gets what it names

    def to_dict(self) -> dict[str, object]:
        return {"app_backend": self.app_backend, "keep_app_backend": self.keep_app_backend,
                "faults_apply": self.faults_apply, "note": self.note}


def _scheme(url: str) -> str:
    head = url.split("://", 1)[0] if "://" in url else url
    return head.split("+", 1)[0].lower()


def _stack_name(stack_backend: str) -> str:
    scheme = _scheme(stack_backend) if stack_backend else "redis"
    return "Redis" if scheme in _STACK_SERVES else f"{stack_backend.split('://', 1)[0]}:// backend"


def plan_result_backend(app_backend: object, stack_backend: str = "") -> BackendPlan:
    """The plan for an app whose ``result_backend`` setting is `app_backend` (a URL, or None),
    on a stack whose own backend URL is `stack_backend` ("" or a ``redis://`` URL: Redis).

    >>> plan_result_backend(None).keep_app_backend
    False
    >>> plan_result_backend("db+postgresql://db/results").note
    "the app's result backend db+postgresql:// is replaced by the stack's Redis (through the fault proxy): chords and results behave as on Redis, not as in production"
    """
    url = str(app_backend or "").strip()
    served = stack_backend.strip()
    if served and _scheme(served) not in _STACK_SERVES:
        if url == served or (_scheme(url) == "rpc" and _scheme(served) == "rpc"):
            # The stack serves exactly this backend, with its faults: nothing to keep or replace.
            return BackendPlan(url.split("://", 1)[0], False, True, "")
        head = url.split("://", 1)[0] if "://" in url else (url or "none")
        return BackendPlan(head, False, True,
                           f"the app's result backend {head}:// is replaced by the stack's {_stack_name(served)}: "
                           "chords and results behave as on that backend, not as in production")
    if not url or url.lower() in ("disabled", "none"):
        # Apps commonly read the backend URL from the environment the harness sets for workers:
        # the producer process cannot tell "none by design", so the workers get the stack's Redis.
        return BackendPlan("", False, True, "")
    scheme = _scheme(url)
    if scheme in _STACK_SERVES:
        return BackendPlan(scheme, False, True, "")
    if scheme == "db" and "+postgresql" not in url and "+mysql" not in url and "sqlite" in url:
        return BackendPlan(url.split("://", 1)[0], True, False,
                           f"kept the app's result backend {url.split('://', 1)[0]}:// (a local SQLAlchemy "
                           "database): it cannot be put behind the fault proxy, so backend faults do not act on it")
    if scheme in ("rpc", "django-db"):
        return BackendPlan(scheme, True, False,
                           f"kept the app's result backend {scheme}:// ({_KEPT[scheme]}); backend faults do not act "
                           "on it" + (" (results travel on the broker connection, through its proxy)"
                                      if scheme == "rpc" else ""))
    head = url.split("://", 1)[0] if "://" in url else url
    return BackendPlan(head, False, True,
                       f"the app's result backend {head}:// is replaced by the stack's Redis (through the fault "
                       "proxy): chords and results behave as on Redis, not as in production")


def plan_for_app(app: Any, settings: Mapping[str, Any] | None = None, stack_backend: str = "") -> BackendPlan:
    """The plan for a Celery `app` run with `settings` overrides (their ``result_backend`` wins),
    on a stack whose backend URL is `stack_backend`.

    >>> from celery import Celery
    >>> plan_for_app(Celery("x", set_as_current=False), {"result_backend": "rpc://"}).keep_app_backend
    True
    """
    return plan_result_backend(dict(settings or {}).get("result_backend", app.conf.result_backend), stack_backend)
