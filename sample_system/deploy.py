"""`prepare`: the sample system with its workload, deployed on a harness stack.

Responsibility: the import path the harness names for the sample system
(``sample_system.deploy:prepare``: certify, exploration and its reproducers, the scenario
suite). What a deployment is lives in `sample_system.deployment`; this module only binds it
to `SampleWorkload`.

Example:
    >>> with prepare(stack, acks_late=False) as deployment:          # doctest: +SKIP
    ...     run_deployment(stack, deployment, RunConfig(n_per_kind=2))
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from harness.workload import Deployment
from sample_system.deployment import APP, CHAOS_TIMINGS, deploy_sample
from sample_system.workload import SampleWorkload

__all__ = ["APP", "CHAOS_TIMINGS", "prepare"]


def prepare(stack: Any, *, concurrency: int = 2, **variant: Any) -> AbstractContextManager[Deployment]:
    """A Deployment of the sample system on `stack` (a context manager); `variant` overrides
    Settings fields (``acks_late=False``, ``idempotent_effects=False``, ...), over the
    ``SAMPLE_<FIELD>`` environment variables (see `sample_system.deployment.deploy_sample`)."""
    return deploy_sample(stack, SampleWorkload, concurrency=concurrency, **variant)
