"""Every reliability setting of the sample system in one frozen value.

Responsibility: hold the knobs (with the production values from the reference articles as
defaults), validate them when built, read them from ``SAMPLE_*`` environment variables and
write them back as environment variables, so a worker subprocess gets exactly the settings
the harness built.

Defaults and where they come from:

* ``serializer="json"`` and json-only ``accept_content``: all three articles.
* ``acks_late=True``, ``reject_on_worker_lost=True``, ``prefetch_multiplier=1``: the
  "Production Configuration" of the event-driven article and the microservices article.
* ``time_limit=300``, ``soft_time_limit=240``: the microservices article.
* ``result_expires=86400``: the production-pipeline article.
* ``max_tasks_per_child=100``, ``concurrency=4``, ``send_events=True``: the event-driven article.
* ``max_retries=5``, ``retry_backoff=1``, ``retry_backoff_max=600``, ``retry_jitter=True``:
  the event-driven article's retry pattern.
* ``confirm_publish=True`` and ``broker_heartbeat=30``: not given by the articles; publisher
  confirms close the silent publish-loss hole (failure mode 11) and a 30 s heartbeat detects a
  half-open broker socket in about a minute (failure mode 1).
* ``breaker_max_deferrals=20``: not from the articles either. A call the open circuit breaker
  refused was never made, so it must not spend the retry budget; the chaos suite found that
  otherwise one always-503 request keeps a process's breaker open and pushes healthy tasks
  into the DLQ after a short partner outage.

Variants the harness should catch are one keyword away: ``Settings(acks_late=False)``,
``Settings(idempotent_effects=False)``, ``Settings(dlq=False)``, ``Settings(rate_limit=None)``,
``Settings(broker="redis", visibility_timeout=10)``.

Example:
    >>> s = Settings(acks_late=False)
    >>> s.acks_late, s.prefetch_multiplier
    (False, 1)
    >>> Settings.from_env({"SAMPLE_RATE_LIMIT": "none", "SAMPLE_MAX_RETRIES": "3"}).rate_limit is None
    True
    >>> Settings.from_env(Settings(max_retries=2).to_env()).max_retries
    2
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError

ENV_PREFIX = "SAMPLE_"

BrokerKind = Literal["rabbitmq", "redis"]
DLQMode = Literal["reject", "publish", "redis", "off"]
QueueType = Literal["classic", "quorum"]

DEFAULT_BROKER_URLS: dict[str, str] = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/1",
}
_BROKER_SCHEMES: dict[str, tuple[str, ...]] = {
    "rabbitmq": ("amqp", "pyamqp", "amqps"),
    "redis": ("redis", "rediss"),
}
_RATE_RE = re.compile(r"^\s*\d+(\.\d+)?\s*(/\s*[smh])?\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"", "none", "null"}


@dataclass(frozen=True, slots=True)
class Settings:
    """The sample system's configuration; build variants with keyword overrides.

    Connection fields (``broker_url``, ``backend_url``, ``db_url``, ``partner_url``) say where
    things are; every other field is a reliability or workload knob. See the module docstring
    for the provenance of each default.

    >>> Settings(broker="redis", visibility_timeout=10).effective_broker_url
    'redis://127.0.0.1:6379/1'
    """

    # --- where things are
    broker: BrokerKind = "rabbitmq"
    broker_url: str | None = None
    backend_url: str = "redis://127.0.0.1:6379/0"
    db_url: str = "sqlite:///sample_system.sqlite3"
    partner_url: str = "http://127.0.0.1:8081"

    # --- delivery guarantees
    serializer: str = "json"
    acks_late: bool = True
    reject_on_worker_lost: bool = True
    prefetch_multiplier: int = 1
    confirm_publish: bool = True
    # publishes ride through a short broker outage: retries 0, 0.5, 1, 1.5, 2, 2 ... s apart
    publish_max_retries: int = 20
    broker_heartbeat: float = 30.0
    broker_connection_timeout: float = 4.0
    visibility_timeout: int | None = None
    cancel_long_running_tasks_on_connection_loss: bool = True
    # RabbitMQ queue type of every service queue and the DLQ. "quorum": replicated Raft queues,
    # at-least-once dead-lettering, native delayed delivery for countdowns (Celery >= 5.5).
    queue_type: QueueType = "classic"
    # On quorum queues, round retry countdowns up to whole seconds >= 1 (native delayed delivery
    # refuses a countdown below 1 s: found by `certify --load` with SAMPLE_QUEUE_TYPE=quorum).
    round_up_countdowns: bool = True
    # Quorum queues only: RabbitMQ dead-letters a message returned more than this many times
    # (``x-delivery-limit``), the bound on a poison message that is requeued for ever (a task
    # that kills its child under reject_on_worker_lost, or hits its hard time limit under
    # acks_on_timeout=False). None: no limit (RabbitMQ 3.x's default).
    delivery_limit: int | None = None
    # A task that hits its hard time limit is acked (Celery's default, task_acks_on_timeout /
    # task_acks_on_failure_or_timeout) and its envelope published to the DLQ by the task; False:
    # the worker requeues it (reject requeue=True), to run again (failure mode 4). Bound the
    # redeliveries with `delivery_limit`, or a task that always times out loops for ever.
    acks_on_timeout: bool = True

    # --- limits and housekeeping
    soft_time_limit: float = 240.0
    time_limit: float = 300.0
    result_expires: int = 86400
    max_tasks_per_child: int | None = 100
    concurrency: int = 4
    send_events: bool = True
    backend_socket_timeout: float = 10.0
    # a result-backend blip must not fail the task: retry backend writes (Celery's default is off)
    backend_always_retry: bool = True

    # --- retries, rate limit, circuit breaker around the partner API
    max_retries: int = 5
    retry_backoff: float = 1.0
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    rate_limit: str | None = "10/s"
    partner_timeout: float = 10.0
    breaker_failure_threshold: int = 5
    breaker_reset_timeout: float = 30.0
    # A call the open breaker refused was never made: the task waits for the breaker without
    # spending its retry budget, at most this many times (then the refusal counts as an attempt).
    breaker_max_deferrals: int = 20

    # --- patterns that a variant may switch off
    idempotent_effects: bool = True
    dlq: bool = True
    # A retried attempt whose ack was lost (a broker blip right after `self.retry()` published
    # the next attempt) is delivered again and would retry again: two copies of the task then
    # run on, and both may be dead-lettered. The guard records each attempt that concluded with a
    # retry and ignores (acks) a later delivery of it.
    retry_fork_guard: bool = True

    # --- workload shape
    notification_channels: tuple[str, ...] = field(default=("email", "sms", "push"))
    scan_assets: int = 4

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid sample_system Settings: " + "; ".join(problems))

    # ----------------------------------------------------------------- derived values
    @property
    def effective_broker_url(self) -> str:
        """`broker_url`, or the default URL for the `broker` kind when none was given."""
        return self.broker_url or DEFAULT_BROKER_URLS[self.broker]

    @property
    def dlq_mode(self) -> DLQMode:
        """How a permanently failed task reaches the dead-letter queue.

        ``reject``: the worker rejects the message (``requeue=False``) and RabbitMQ moves it to
        the dead-letter exchange atomically; ``publish``: the task publishes an envelope itself
        (RabbitMQ with early acks, where there is no message left to reject); ``redis``: the
        envelope goes to a Redis hash keyed by task id (a Redis broker has no dead-lettering);
        ``off``: failures are acked and dropped (the no-DLQ variant).

        >>> Settings().dlq_mode, Settings(acks_late=False).dlq_mode, Settings(dlq=False).dlq_mode
        ('reject', 'publish', 'off')
        """
        if not self.dlq:
            return "off"
        if self.broker == "redis":
            return "redis"
        return "reject" if self.acks_late else "publish"

    def replace(self, **overrides: Any) -> Settings:
        """A copy with `overrides` applied (validated like the constructor).

        >>> Settings().replace(rate_limit=None).rate_limit is None
        True
        """
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown Settings field(s) {unknown}: {_suggest(unknown[0], field_names())}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (for reports and ``--json`` output)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["notification_channels"] = list(self.notification_channels)
        d["effective_broker_url"] = self.effective_broker_url
        d["dlq_mode"] = self.dlq_mode
        return d

    # ----------------------------------------------------------------- environment
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``SAMPLE_<FIELD>`` variables (then `overrides`); unknown names are errors.

        Booleans accept 1/0, true/false, yes/no, on/off; optional fields accept ``none``;
        tuples are comma-separated.

        >>> Settings.from_env({"SAMPLE_ACKS_LATE": "false"}).acks_late
        False
        """
        values = env_overrides(environ)
        names = field_names()
        values.update(overrides)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown Settings field(s) {unknown}: {_suggest(unknown[0], names)}")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Every field as a ``SAMPLE_*`` variable, the inverse of `from_env`.

        >>> Settings().to_env()["SAMPLE_PREFETCH_MULTIPLIER"]
        '1'
        """
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                s = "none"
            elif isinstance(v, bool):
                s = "true" if v else "false"
            elif isinstance(v, tuple):
                s = ",".join(v)
            else:
                s = str(v)
            out[ENV_PREFIX + f.name.upper()] = s
        return out


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields that ``SAMPLE_<FIELD>`` variables set, parsed; unknown names are errors.

    >>> env_overrides({"SAMPLE_QUEUE_TYPE": "quorum", "PATH": "/bin"})
    {'queue_type': 'quorum'}
    """
    env = os.environ if environ is None else environ
    names = field_names()
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in names:
            raise ConfigError(
                f"unknown environment variable {var}={raw!r}: "
                f"{_suggest(name, names, prefix=ENV_PREFIX)}"
            )
        values[name] = _parse(var, raw, hints[name])
    return values


def field_names() -> tuple[str, ...]:
    """The names of all Settings fields (also the lower-cased env var suffixes)."""
    return tuple(f.name for f in dataclasses.fields(Settings))


def _suggest(name: str, names: tuple[str, ...] | list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"did you mean {prefix}{close[0].upper() if prefix else close[0]}?"
    shown = ", ".join((prefix + n.upper()) if prefix else n for n in names)
    return f"known names are {shown}"


def _parse(var: str, raw: str, hint: Any) -> Any:
    """Convert one env var string to the field's type, naming the variable on failure."""
    text = raw.strip()
    optional = False
    base = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        base = args[0]
    if optional and text.lower() in _NONE:
        return None
    try:
        if base is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if typing.get_origin(base) is tuple:
            return tuple(p.strip() for p in text.split(",") if p.strip())
        return text
    except ValueError as exc:
        raise ConfigError(f"environment variable {var}={raw!r} is not a valid {_type_name(base)}: {exc}") from None


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t)


def _problems(s: Settings) -> list[str]:
    """Everything wrong with `s`, each naming the field and the fix."""
    p: list[str] = []
    if s.broker not in _BROKER_SCHEMES:
        p.append(f"broker={s.broker!r} is not supported: use 'rabbitmq' or 'redis'")
    elif s.broker_url is not None:
        scheme = s.broker_url.split("://", 1)[0].lower()
        if scheme not in _BROKER_SCHEMES[s.broker]:
            p.append(
                f"broker_url={s.broker_url!r} does not match broker={s.broker!r}: "
                f"use a {'/'.join(_BROKER_SCHEMES[s.broker])}:// URL or set broker to match"
            )
    if s.queue_type not in ("classic", "quorum"):
        p.append(f"queue_type={s.queue_type!r} is not a RabbitMQ queue type: use 'classic' or 'quorum'")
    elif s.queue_type == "quorum" and s.broker != "rabbitmq":
        p.append("queue_type='quorum' needs broker='rabbitmq' (Redis has no queue types): set one or the other")
    if s.delivery_limit is not None:
        if s.delivery_limit < 0:
            p.append(f"delivery_limit={s.delivery_limit} must be >= 0 (or None: no limit)")
        elif s.queue_type != "quorum":
            p.append("delivery_limit needs queue_type='quorum' (classic queues have no x-delivery-limit): "
                     "set queue_type='quorum' or leave delivery_limit None")
    if s.serializer not in ("json", "msgpack", "yaml"):
        p.append(f"serializer={s.serializer!r}: use 'json' (the sample system never accepts pickle)")
    if s.prefetch_multiplier < 0:
        p.append(f"prefetch_multiplier={s.prefetch_multiplier} must be >= 0 (1 is the safe value)")
    if s.visibility_timeout is not None:
        if s.broker != "redis":
            p.append("visibility_timeout applies to a Redis broker only: set broker='redis' or leave it None")
        elif s.visibility_timeout <= 0:
            p.append(f"visibility_timeout={s.visibility_timeout} must be > 0 seconds")
    for name in ("broker_heartbeat", "broker_connection_timeout", "soft_time_limit", "time_limit",
                 "partner_timeout", "backend_socket_timeout", "breaker_reset_timeout"):
        if getattr(s, name) < 0:
            p.append(f"{name}={getattr(s, name)} must be >= 0 seconds")
    if s.soft_time_limit and s.time_limit and s.soft_time_limit >= s.time_limit:
        p.append(
            f"soft_time_limit={s.soft_time_limit} must be below time_limit={s.time_limit}, "
            "so the task can clean up before the hard kill"
        )
    if s.max_retries < 0:
        p.append(f"max_retries={s.max_retries} must be >= 0 (0 = never retry)")
    if s.retry_backoff < 0 or s.retry_backoff_max < 0:
        p.append("retry_backoff and retry_backoff_max must be >= 0 seconds")
    if s.rate_limit is not None and not _RATE_RE.match(s.rate_limit):
        p.append(f"rate_limit={s.rate_limit!r} is not a Celery rate: use e.g. '10/s', '100/m', '2/h' or None")
    if s.breaker_failure_threshold < 1:
        p.append(f"breaker_failure_threshold={s.breaker_failure_threshold} must be >= 1")
    if s.breaker_max_deferrals < 0:
        p.append(f"breaker_max_deferrals={s.breaker_max_deferrals} must be >= 0 (0 = a refused call is an attempt)")
    if s.max_tasks_per_child is not None and s.max_tasks_per_child < 1:
        p.append(f"max_tasks_per_child={s.max_tasks_per_child} must be >= 1 or None (never recycle)")
    if s.concurrency < 1:
        p.append(f"concurrency={s.concurrency} must be >= 1")
    if s.result_expires < 0:
        p.append(f"result_expires={s.result_expires} must be >= 0 seconds")
    if not s.notification_channels:
        p.append("notification_channels is empty: give at least one channel, e.g. ('email',)")
    elif any(not re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in s.notification_channels):
        p.append(f"notification_channels={s.notification_channels!r}: use lower-case identifiers like 'email'")
    if s.scan_assets < 1:
        p.append(f"scan_assets={s.scan_assets} must be >= 1")
    return p
