"""Deploy the sample system on a harness stack: partner API behind its proxy, a fresh effect
store, settings compressed for chaos runs, and the workers' environment.

Responsibility: the sample system's side of `harness.workload.Deployment`, given the workload
to deploy (`make_workload(settings)`). It never imports the workload module: the workload's
``prepare`` calls it with its own class, and `sample_system.deploy.prepare` (the import path
certify, exploration and the scenario suite name) with `SampleWorkload`; so the arrows go
``deploy -> workload -> deployment`` and never back.

Retry backoff, the circuit breaker's reset and the partner timeout are scaled down from the
production defaults (a retry due in 10 minutes cannot finish inside a 60 s scenario); every
reliability setting (acks, prefetch, confirms, idempotency, DLQ, rate limit) keeps its
production value unless a variant overrides it.

Example:
    >>> with deploy_sample(stack, SampleWorkload, acks_late=False) as deployment:   # doctest: +SKIP
    ...     run_deployment(stack, deployment, RunConfig(n_per_kind=2))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.processes import reaper
from harness.workload import Deployment
from sample_system.factory import make_app
from sample_system.partner_api import partner_behind_proxy
from sample_system.settings import Settings, env_overrides
from sample_system.topology import SERVICE_QUEUES

APP = "sample_system:app"

#: Timings scaled for a chaos run; reliability settings are untouched.
#: With 5 retries the retry window is 0.3+0.6+1.2+1.5+1.5 = 5.1 s nominal and at least 2.55 s
#: (equal jitter), longer than a scenario's partner outage plus the breaker's reset (1.5 s).
CHAOS_TIMINGS: dict[str, Any] = {
    "retry_backoff": 0.3,
    "retry_backoff_max": 1.5,
    "breaker_reset_timeout": 0.5,
    "partner_timeout": 3.0,
    "broker_heartbeat": 10.0,
}


_WHERE_THINGS_ARE = frozenset({"broker", "broker_url", "backend_url", "db_url", "partner_url"})


@contextmanager
def deploy_sample(stack: Any, make_workload: Callable[[Settings], Any], *, concurrency: int = 2,
                  **variant: Any) -> Iterator[Deployment]:
    """Yield a Deployment of the sample system on `stack` running the workload `make_workload`
    builds from the deployed settings; `variant` overrides Settings fields.

    ``SAMPLE_<FIELD>`` environment variables set fields too (`variant` wins), so the
    certification of a variant needs no code: ``SAMPLE_QUEUE_TYPE=quorum celery-chaos certify``.
    Where things are (broker, backend, database, partner) always comes from the stack.
    """
    from_env = {k: v for k, v in env_overrides().items() if k not in _WHERE_THINGS_ARE}
    variant = {**from_env, **variant}
    names = {f.name for f in fields(Settings)}
    unknown = sorted(set(variant) - names)
    if unknown:
        raise ConfigError(f"unknown sample-system setting(s) {unknown}: choose from {sorted(names)}")
    broker = "redis" if stack.urls.broker_kind == "redis" else "rabbitmq"
    if variant.get("broker", broker) != broker:
        raise ConfigError(f"variant broker={variant['broker']!r} needs a stack with that broker "
                          f"(this stack's broker is {broker}): start it with LocalStackOptions(broker=...)")
    tmp = Path(reaper.make_temp_dir("chaos-sample-"))
    try:
        with partner_behind_proxy(stack) as (_api, partner_url):
            values: dict[str, Any] = {**CHAOS_TIMINGS, "broker": broker, "broker_url": stack.urls.broker_url,
                                      "backend_url": stack.urls.backend_url, "partner_url": partner_url,
                                      "db_url": f"sqlite:///{tmp / 'effects.sqlite3'}", "concurrency": concurrency}
            values.update(variant)
            settings = Settings(**values)
            changed = ", ".join(f"{k}={v}" for k, v in sorted(variant.items())) or "production settings"
            producer = make_app(settings)
            try:
                yield Deployment(app=APP, workload=make_workload(settings), env=settings.to_env(),
                                 queues=tuple(SERVICE_QUEUES), concurrency=concurrency,
                                 description=f"sample system ({changed})", producer_app=producer)
            finally:
                producer.close()
    finally:
        reaper.remove_dir(tmp)
