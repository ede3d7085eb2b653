"""Where a Locust process sends its load: the environment contract between the harness and a locustfile.

Responsibility: one frozen value, `LoadTarget`, that names the producer's broker and result
backend (normally the ``producer_*`` proxies of the stack, so faults bite), the run id and the
history directory, and its translation to and from environment variables. The harness's runner
sets them; a plain ``locust -f loadtests/locustfile.py`` run reads the ones you export.

Variables (read when a Locust process starts its first user, never at import):

- ``CHAOS_PRODUCER_BROKER_URL``: broker URL for publishing (fallback ``CHAOS_BROKER_URL``). Required.
- ``CHAOS_PRODUCER_BACKEND_URL``: result backend URL (fallback ``CHAOS_BACKEND_URL``). Optional;
  the app's own default is kept when neither is set.
- ``CHAOS_RUN_ID``: the run id stamped into every message (default: a fresh ``load-<hex>``).
- ``CHAOS_HISTORY_DIR``: when set, every publish is recorded into this history directory and
  every submitted workload unit into the units ledger (``CHAOS_UNITS_DIR``, default
  ``<history dir>/units``).
- ``CHAOS_LOAD_USER_RATE``: publishes per second per Locust user (0 or unset: as fast as possible).
- ``CHAOS_LOAD_KINDS``: comma-separated workload kinds to publish (unset: all the workload's kinds).
- ``CHAOS_LOAD_PUBLISH_TIMEOUT``: seconds one submit may take before it counts as failed and the
  process's producer connections are reset (default 10).

Example:
    >>> t = LoadTarget(broker_url="amqp://u:p@127.0.0.1:5672//", run_id="r1", user_rate=5.0)
    >>> env = t.to_env()
    >>> env["CHAOS_PRODUCER_BROKER_URL"], env["CHAOS_LOAD_USER_RATE"]
    ('amqp://u:p@127.0.0.1:5672//', '5.0')
    >>> LoadTarget.from_env(env) == t
    True
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.stack.base import StackURLs

__all__ = [
    "ENV_BACKEND_URL",
    "ENV_BROKER_URL",
    "ENV_HISTORY_DIR",
    "ENV_KINDS",
    "ENV_PRODUCER_BACKEND_URL",
    "ENV_PRODUCER_BROKER_URL",
    "ENV_PUBLISH_TIMEOUT",
    "ENV_RUN_ID",
    "ENV_UNITS_DIR",
    "ENV_USER_RATE",
    "LoadTarget",
]

ENV_PRODUCER_BROKER_URL = "CHAOS_PRODUCER_BROKER_URL"
ENV_BROKER_URL = "CHAOS_BROKER_URL"
ENV_PRODUCER_BACKEND_URL = "CHAOS_PRODUCER_BACKEND_URL"
ENV_BACKEND_URL = "CHAOS_BACKEND_URL"
ENV_RUN_ID = "CHAOS_RUN_ID"  # same name harness.history uses
ENV_HISTORY_DIR = "CHAOS_HISTORY_DIR"  # same name harness.history uses
ENV_UNITS_DIR = "CHAOS_UNITS_DIR"
ENV_USER_RATE = "CHAOS_LOAD_USER_RATE"
ENV_KINDS = "CHAOS_LOAD_KINDS"
ENV_PUBLISH_TIMEOUT = "CHAOS_LOAD_PUBLISH_TIMEOUT"

DEFAULT_PUBLISH_TIMEOUT_S = 10.0


def new_run_id() -> str:
    """A fresh run id for a load run started without one (``load-<6 hex>``)."""
    return f"load-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """What a Locust process publishes to and where it records (see the module docstring).

    Example:
        >>> LoadTarget(broker_url="amqp://127.0.0.1//", run_id="r1", history_dir="/tmp/h").units_path
        PosixPath('/tmp/h/units')
    """

    broker_url: str
    run_id: str
    backend_url: str | None = None
    history_dir: str | None = None
    units_dir: str | None = None
    user_rate: float = 0.0
    kinds: tuple[str, ...] = ()
    publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.broker_url or "://" not in self.broker_url:
            raise ConfigError(
                f"broker_url={self.broker_url!r} is not a broker URL: pass the producer's broker URL, e.g. "
                "stack.urls.url_for(Role.PRODUCER_BROKER)"
            )
        if not self.run_id or ":" in self.run_id:
            raise ConfigError(f"run_id={self.run_id!r} must be non-empty and contain no ':' (it prefixes unit keys)")
        if not math.isfinite(self.user_rate) or self.user_rate < 0:
            raise ConfigError(f"user_rate={self.user_rate} must be >= 0 publishes per second per user (0: no pacing)")
        if not math.isfinite(self.publish_timeout_s) or self.publish_timeout_s <= 0:
            raise ConfigError(f"publish_timeout_s={self.publish_timeout_s} must be > 0 seconds")
        if any(not k or "," in k for k in self.kinds):
            raise ConfigError(f"kinds={self.kinds!r}: each kind must be a non-empty name without commas")

    @property
    def units_path(self) -> Path | None:
        """Where submitted units are written (None: no ledger, the run records no history)."""
        if self.units_dir:
            return Path(self.units_dir)
        if self.history_dir:
            return Path(self.history_dir) / "units"
        return None

    @classmethod
    def from_urls(cls, urls: StackURLs, *, run_id: str | None = None, history_dir: str | Path | None = None,
                  user_rate: float = 0.0, kinds: tuple[str, ...] = (),
                  publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S) -> LoadTarget:
        """The producer-role URLs of a running stack (through their proxies, so faults apply to the load).

        Example: ``LoadTarget.from_urls(stack.urls, run_id="r7", history_dir=run_dir / "history")``.
        """
        from harness.stack.base import Role

        return cls(broker_url=urls.url_for(Role.PRODUCER_BROKER), backend_url=urls.url_for(Role.PRODUCER_BACKEND),
                   run_id=run_id or new_run_id(), history_dir=None if history_dir is None else str(history_dir),
                   user_rate=user_rate, kinds=tuple(kinds), publish_timeout_s=publish_timeout_s)

    def to_env(self) -> dict[str, str]:
        """The environment variables a Locust process needs (only those with a value)."""
        env = {ENV_PRODUCER_BROKER_URL: self.broker_url, ENV_RUN_ID: self.run_id,
               ENV_USER_RATE: repr(float(self.user_rate)), ENV_PUBLISH_TIMEOUT: repr(float(self.publish_timeout_s))}
        if self.backend_url:
            env[ENV_PRODUCER_BACKEND_URL] = self.backend_url
        if self.history_dir:
            env[ENV_HISTORY_DIR] = self.history_dir
        if self.units_dir:
            env[ENV_UNITS_DIR] = self.units_dir
        if self.kinds:
            env[ENV_KINDS] = ",".join(self.kinds)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoadTarget:
        """Read the variables (see the module docstring); a missing broker URL says what to export.

        >>> LoadTarget.from_env({"CHAOS_BROKER_URL": "amqp://127.0.0.1//", "CHAOS_RUN_ID": "r2"}).run_id
        'r2'
        """
        env = os.environ if environ is None else environ
        broker = env.get(ENV_PRODUCER_BROKER_URL) or env.get(ENV_BROKER_URL)
        if not broker:
            raise ConfigError(
                f"no broker to load: export {ENV_PRODUCER_BROKER_URL} (or {ENV_BROKER_URL}), e.g. the "
                "proxied.producer_broker.url printed by `celery-chaos stack up --json`"
            )
        return cls(
            broker_url=broker,
            backend_url=env.get(ENV_PRODUCER_BACKEND_URL) or env.get(ENV_BACKEND_URL) or None,
            run_id=env.get(ENV_RUN_ID) or new_run_id(),
            history_dir=env.get(ENV_HISTORY_DIR) or None,
            units_dir=env.get(ENV_UNITS_DIR) or None,
            user_rate=_float(env, ENV_USER_RATE, 0.0),
            kinds=tuple(k.strip() for k in (env.get(ENV_KINDS) or "").split(",") if k.strip()),
            publish_timeout_s=_float(env, ENV_PUBLISH_TIMEOUT, DEFAULT_PUBLISH_TIMEOUT_S),
        )


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: export it as seconds or a rate, e.g. {name}=5") from None
