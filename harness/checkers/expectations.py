"""Expectations: the user's claim, the configuration that explains anomalies, and what to hold the run to.

Responsibility: one frozen value the checkers read: the `Claim` (which anomalies are allowed:
by default none is: no task lost, every declared effect exactly once), the configuration
under test (which only *explains* an anomaly: early acks explain a loss on a worker kill, they
never excuse it), the retry / rate-limit policies to hold the workers to, the outcome and the
declared effects of each unit key, and the knobs of the measurements (SLOs, windows,
tolerances). Validated when built.

Options, the way a scenario sets them (times in seconds):

- ``run_id``: ops carrying another ``value.run_id`` are leftovers of another run: "unexpected".
- ``claim``: a `Claim` (default at-least-once delivery, exactly-once effects).
- ``acks_late``, ``reject_on_worker_lost``: Celery's ``task_acks_late`` and
  ``task_reject_on_worker_lost``, as the workers run them; they name the cause of a loss.
- ``config``: other settings read from the workers that explain anomalies (``broker_kind``,
  ``visibility_timeout``, ``confirm_publish``, ``result_backend_always_retry``).
- ``idempotent_effects``: the system says its effect writes are idempotent (default True); it
  explains a duplicate effect, the claim decides whether it is allowed.
- ``declared_effects``: workload key -> the effects that unit must leave (``Unit.effects``).
- ``allow_duplicate_executions``: at-least-once (True, default) or exactly-once executions.
- ``dead_letter_queue``: fatally failed / retry-exhausted tasks must land in the DLQ.
- ``retry_policy`` (default for every task not named ``celery.*``) and ``retry_policies``
  (per task name): `RetryPolicy` values.
- ``rate_limits``: task name -> executions per second allowed per worker (Celery's
  ``rate_limit`` is per worker instance); ``rate_limit_window_s``, ``rate_limit_burst``.
- ``chords``: the workload runs chords (value.chord_id / value.role on its ops).
- ``expected_outcomes``: workload key -> "complete" or "dlq".
- ``require_fault_bite``: a property that was never exercised is unknown (True, default) or a
  pass with a "vacuous" note (False, for fault-free baselines).
- ``max_deliveries``: bound on executions of one attempt of a task (poison-message loops).
- ``latency_slo_s`` / ``max_late_fraction``; ``recovery_slo_s``;
  ``throughput_recovery_fraction`` / ``throughput_window_s`` / ``throughput_recovery_slo_s``.
- ``retry_delay_tolerance_s``, ``max_retry_lateness_s``: slack on retry delays.
- ``kill_fault_kinds``: fault kinds that cut running tasks (the run lists those whose driver
  declares ``cuts_running_tasks``; a fault op that says ``cuts_running_tasks`` is one anyway).
- ``max_counterexamples`` (per anomaly kind), ``max_ops_per_counterexample``.

Example:
    >>> exp = Expectations(acks_late=True, reject_on_worker_lost=True,
    ...                    retry_policy=RetryPolicy(max_retries=3, backoff_factor=1, backoff_max=8))
    >>> exp.loss_allowed_on_kill(scope="worker"), exp.loss_allowed_on_kill(scope="child")
    (False, False)
    >>> Expectations.from_dict(exp.to_dict()) == exp
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from harness.checkers.claim import Claim
from harness.errors import ConfigError

__all__ = ["OUTCOMES", "Claim", "Expectations", "Outcome", "RetryPolicy"]

Outcome = Literal["complete", "dlq"]
OUTCOMES: frozenset[str] = frozenset({"complete", "dlq"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task retries, in Celery's terms; it bounds the attempts and each retry's delay.

    - ``max_retries``: Celery's ``max_retries`` (None: unbounded). Attempts <= max_retries + 1.
    - ``backoff_factor``: ``retry_backoff`` (True is 1): the delay before retry n (n = retries
      so far) is ``min(backoff_max, backoff_factor * 2**n)``; with ``jitter`` (Celery's
      ``retry_jitter``, full jitter) anywhere in ``[0, that]``.
    - ``fixed_delay``: a constant countdown (``default_retry_delay`` or an explicit
      ``countdown=``) when there is no backoff. With neither, delays are not checked.

    Example:
        >>> RetryPolicy(max_retries=5, backoff_factor=2, backoff_max=10, jitter=True).delay_bounds(3)
        (0.0, 10.0)
        >>> RetryPolicy(max_retries=5, backoff_factor=2, backoff_max=10, jitter=False).delay_bounds(1)
        (4.0, 4.0)
    """

    max_retries: int | None = 3
    backoff_factor: float | None = None
    backoff_max: float = 600.0
    jitter: bool = True
    fixed_delay: float | None = None

    def __post_init__(self) -> None:
        if self.max_retries is not None and (not isinstance(self.max_retries, int) or self.max_retries < 0):
            raise ConfigError(f"RetryPolicy.max_retries must be an int >= 0 or None (unbounded), got {self.max_retries!r}")
        if self.backoff_factor is not None:
            if isinstance(self.backoff_factor, bool):
                # Celery's retry_backoff=True means a factor of 1.
                object.__setattr__(self, "backoff_factor", 1.0 if self.backoff_factor else None)
            elif not _finite_nonneg(self.backoff_factor):
                raise ConfigError(f"RetryPolicy.backoff_factor must be a number >= 0 (Celery's retry_backoff), "
                                  f"got {self.backoff_factor!r}")
        if not _finite_nonneg(self.backoff_max):
            raise ConfigError(f"RetryPolicy.backoff_max must be a number >= 0 seconds, got {self.backoff_max!r}")
        if self.fixed_delay is not None and not _finite_nonneg(self.fixed_delay):
            raise ConfigError(f"RetryPolicy.fixed_delay must be a number >= 0 seconds or None, got {self.fixed_delay!r}")
        if self.fixed_delay is not None and self.backoff_factor is not None:
            raise ConfigError("RetryPolicy: give either backoff_factor (exponential backoff) or fixed_delay "
                              "(constant countdown), not both")

    def delay_bounds(self, retries: int) -> tuple[float, float] | None:
        """The allowed countdown (seconds) of the retry asked by the execution with `retries` so far."""
        if self.backoff_factor is not None:
            cap = min(float(self.backoff_max), float(self.backoff_factor) * 2.0 ** min(retries, 1000))
            return (0.0, cap) if self.jitter else (cap, cap)
        if self.fixed_delay is not None:
            return (float(self.fixed_delay), float(self.fixed_delay))
        return None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RetryPolicy:
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the configuration under test allows; see the module docstring for each option.

    Example:
        >>> Expectations(expected_outcomes={"order-1": "complete", "order-2": "dlq"}).outcome_of("order-2")
        'dlq'
    """

    run_id: str | None = None
    claim: Claim = field(default_factory=Claim)
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    idempotent_effects: bool = True
    allow_duplicate_executions: bool = True
    dead_letter_queue: bool = False
    retry_policy: RetryPolicy | None = None
    retry_policies: Mapping[str, RetryPolicy] = field(default_factory=dict)
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    rate_limit_window_s: float = 1.0
    rate_limit_burst: int = 1
    chords: bool = False
    expected_outcomes: Mapping[str, str] = field(default_factory=dict)
    declared_effects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    require_fault_bite: bool = True
    max_deliveries: int | None = None
    latency_slo_s: float | None = None
    max_late_fraction: float = 0.0
    recovery_slo_s: float | None = None
    throughput_recovery_fraction: float = 0.8
    throughput_window_s: float = 1.0
    throughput_recovery_slo_s: float | None = None
    retry_delay_tolerance_s: float = 0.25
    max_retry_lateness_s: float | None = None
    kill_fault_kinds: frozenset[str] = frozenset()
    max_counterexamples: int = 20
    max_ops_per_counterexample: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_policies", dict(self.retry_policies))
        object.__setattr__(self, "rate_limits", dict(self.rate_limits))
        object.__setattr__(self, "expected_outcomes", dict(self.expected_outcomes))
        object.__setattr__(self, "declared_effects", {str(k): tuple(v) for k, v in self.declared_effects.items()})
        object.__setattr__(self, "config", dict(self.config))
        object.__setattr__(self, "claim", Claim.from_any(self.claim))
        object.__setattr__(self, "kill_fault_kinds", frozenset(self.kill_fault_kinds))
        bad = {k: v for k, v in self.expected_outcomes.items() if v not in OUTCOMES}
        if bad:
            sample = dict(list(bad.items())[:3])
            raise ConfigError(f"expected_outcomes values must be 'complete' or 'dlq'; got {sample} "
                              f"({len(bad)} bad): map each workload key to the outcome it should reach")
        for name, pol in [("retry_policy", self.retry_policy), *self.retry_policies.items()]:
            if pol is not None and not isinstance(pol, RetryPolicy):
                raise ConfigError(f"retry policy for {name!r} must be a RetryPolicy, got {type(pol).__name__}: "
                                  "use RetryPolicy(max_retries=..., backoff_factor=...)")
        for name, rate in self.rate_limits.items():
            if not _finite_pos(rate):
                raise ConfigError(f"rate_limits[{name!r}] must be executions per second > 0, got {rate!r} "
                                  "(Celery's '10/m' is 10/60)")
        for attr in ("rate_limit_window_s", "throughput_window_s"):
            if not _finite_pos(getattr(self, attr)):
                raise ConfigError(f"{attr} must be a number of seconds > 0, got {getattr(self, attr)!r}")
        for attr in ("retry_delay_tolerance_s",):
            if not _finite_nonneg(getattr(self, attr)):
                raise ConfigError(f"{attr} must be a number of seconds >= 0, got {getattr(self, attr)!r}")
        for attr in ("latency_slo_s", "recovery_slo_s", "throughput_recovery_slo_s", "max_retry_lateness_s"):
            val = getattr(self, attr)
            if val is not None and not _finite_nonneg(val):
                raise ConfigError(f"{attr} must be None or a number of seconds >= 0, got {val!r}")
        if not (0.0 <= self.max_late_fraction <= 1.0):
            raise ConfigError(f"max_late_fraction must be in [0, 1], got {self.max_late_fraction!r}")
        if not (0.0 < self.throughput_recovery_fraction <= 10.0):
            raise ConfigError("throughput_recovery_fraction must be > 0 (0.8 = recovered at 80% of the "
                              f"pre-fault throughput), got {self.throughput_recovery_fraction!r}")
        for attr, low in (("rate_limit_burst", 0), ("max_counterexamples", 0), ("max_ops_per_counterexample", 0)):
            val = getattr(self, attr)
            if not isinstance(val, int) or val < low:
                raise ConfigError(f"{attr} must be an int >= {low}, got {val!r}")
        if self.max_deliveries is not None and (not isinstance(self.max_deliveries, int) or self.max_deliveries < 1):
            raise ConfigError(f"max_deliveries must be None or an int >= 1, got {self.max_deliveries!r}")
        if self.reject_on_worker_lost and not self.acks_late:
            # Celery ignores task_reject_on_worker_lost without task_acks_late; say so instead of
            # silently checking a configuration that cannot exist.
            raise ConfigError("reject_on_worker_lost=True needs acks_late=True (Celery ignores "
                              "task_reject_on_worker_lost with early acks): set both, or neither")

    # -- what the claim allows, what the configuration explains ----------------------------

    def config_loses_on_kill(self, *, scope: str) -> bool:
        """Whether the configuration lets a task executing when its worker (scope "worker") or
        pool child ("child") was killed be lost: with early acks, yes; with late acks, only a
        child kill without reject-on-worker-lost (Celery then acks the message as failed).
        This explains a loss; whether the loss is allowed is the claim's to say."""
        if not self.acks_late:
            return True
        return scope == "child" and not self.reject_on_worker_lost

    def loss_allowed_on_kill(self, *, scope: str) -> bool:
        """Whether the claim allows losing a task cut by a kill (only at-most-once delivery does)."""
        return self.claim.allows_loss

    def redelivery_expected_on_kill(self, *, scope: str) -> bool:
        """Whether a task executing when killed must be delivered again: under at-least-once, always."""
        return not self.claim.allows_loss

    def retry_policy_for(self, name: str | None) -> RetryPolicy | None:
        """The policy for task `name`; Celery's own ``celery.*`` tasks (chord_unlock retries
        forever by design) only get a policy when named explicitly."""
        if name is not None and name in self.retry_policies:
            return self.retry_policies[name]
        if name is not None and name.startswith("celery."):
            return None
        return self.retry_policy

    def outcome_of(self, key: str) -> str | None:
        return self.expected_outcomes.get(key)

    def is_kill_fault(self, kind: str | None) -> bool:
        return kind is not None and kind in self.kill_fault_kinds

    @classmethod
    def from_celery_config(cls, conf: Mapping[str, Any], **options: Any) -> Expectations:
        """Expectations matching a Celery configuration (``app.conf`` or a dict of settings).

        Reads ``task_acks_late`` and ``task_reject_on_worker_lost`` (ignored by Celery without
        late acks, so ignored here too) and the settings that explain anomalies into ``config``;
        everything else comes from `options`.

        >>> Expectations.from_celery_config({"task_acks_late": True}, run_id="r1").acks_late
        True
        """
        acks_late = bool(conf.get("task_acks_late", False))
        reject = bool(conf.get("task_reject_on_worker_lost", False)) and acks_late
        config = {**explaining_settings(conf), **dict(options.pop("config", None) or {})}
        return cls(**{"acks_late": acks_late, "reject_on_worker_lost": reject, "config": config, **options})

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            val = getattr(self, f.name)
            if f.name == "retry_policy":
                val = None if val is None else val.to_dict()
            elif f.name == "retry_policies":
                val = {k: p.to_dict() for k, p in val.items()}
            elif f.name == "kill_fault_kinds":
                val = sorted(val)
            elif f.name == "claim":
                val = val.to_dict()
            elif f.name == "declared_effects":
                val = {k: list(v) for k, v in val.items()}
            elif isinstance(val, Mapping):
                val = dict(val)
            d[f.name] = val
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Expectations:
        kw = _known_fields(cls, d)
        if kw.get("retry_policy") is not None:
            kw["retry_policy"] = RetryPolicy.from_dict(kw["retry_policy"])
        if "retry_policies" in kw:
            kw["retry_policies"] = {k: RetryPolicy.from_dict(p) for k, p in kw["retry_policies"].items()}
        if "kill_fault_kinds" in kw:
            kw["kill_fault_kinds"] = frozenset(kw["kill_fault_kinds"])
        if "claim" in kw:
            kw["claim"] = Claim.from_any(kw["claim"])
        return cls(**kw)


def explaining_settings(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a Celery configuration that explain anomalies, as plain JSON values.

    >>> explaining_settings({"broker_url": "redis://h:1/0", "broker_transport_options": {"visibility_timeout": 30}})
    {'broker_kind': 'redis', 'visibility_timeout': 30.0, 'confirm_publish': False, 'result_backend_always_retry': False}
    """
    url = str(conf.get("broker_url") or "")
    kind = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    opts = conf.get("broker_transport_options") or {}
    opts = opts if isinstance(opts, Mapping) else {}
    vt = opts.get("visibility_timeout")
    out: dict[str, Any] = {"broker_kind": "redis" if kind in ("redis", "rediss") else kind,
                           "visibility_timeout": float(vt) if isinstance(vt, int | float) else None,
                           "confirm_publish": bool(opts.get("confirm_publish", False)),
                           "result_backend_always_retry": bool(conf.get("result_backend_always_retry", False))}
    if out["visibility_timeout"] is None:
        del out["visibility_timeout"]
    return out


def _known_fields(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option(s) {unknown}; known options: {sorted(names)}")
    return dict(d)


def _finite_nonneg(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _finite_pos(x: Any) -> bool:
    return _finite_nonneg(x) and x > 0
