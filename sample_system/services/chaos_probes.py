"""Chaos probes: one small task whose timing a scenario chooses, to reproduce a failure mode on demand.

Responsibility: give the failure-mode scenarios (``scenarios/failure_modes``) a task of the
sample system whose duration and effect position they control, so a fault lands exactly
where a reported bug needs it: a task longer than the Redis visibility timeout, a task running
while the broker connection resets, a task that blocks the solo pool past the heartbeat.

``probes.work(key=..., seconds=..., effect="after", fail=False)`` works for `seconds` (a plain
sleep, so a solo pool is blocked as a CPU-bound task would block it; ``first_seconds``, when
given, replaces `seconds` on the first delivery only, i.e. while the message's ``redelivered``
flag is false: a task that hangs once, past its hard time limit, and is quick when it comes
back), and applies the effect
``probe.done`` for `key` after the work (``effect="after"``) or before it (``"before"``). With
``fail=True`` it applies no effect and fails for good after the work (`ProbeFailed`, not
retried), so the sample system dead-letters it: a unit whose expected outcome is the DLQ. It
is routed to the ``default`` queue (no explicit route: Celery's ``task_default_queue``), so it
never competes with the business queues. A countdown or ETA is the publisher's choice
(``apply_async(countdown=...)``), not the task's. ``part`` names one of several probes of the same
unit (the header tasks of a chord): the effect's idempotency key is then
``probe.done:<key>:<part>``.

``probes.collect(results, key=...)`` is a chord callback: it checks it got one result per
header and applies the effect ``probe.collected`` for `key` once (``chord_of_probes`` builds
the chord).

Example:
    >>> from sample_system import Settings, make_app
    >>> app = make_app(Settings())
    >>> app.tasks["probes.work"].name, app.amqp.router.route({}, "probes.work")["queue"].name
    ('probes.work', 'default')
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from sample_system.service_task import ServiceTask

PROBE_TASK = "probes.work"
PROBE_EFFECT = "probe.done"
COLLECT_TASK = "probes.collect"
COLLECT_EFFECT = "probe.collected"
#: The longest work a probe accepts: scenarios compress time, a probe never needs minutes.
MAX_SECONDS = 120.0


class ProbeFailed(Exception):
    """The failure a probe raises when asked to (``fail=True``): permanent, never retried."""


def register(app: Celery) -> None:
    @app.task(base=ServiceTask, bind=True, shared=False, name=PROBE_TASK)
    def work(self: ServiceTask, *, key: str, seconds: float = 0.0, effect: str = "after",
             fail: bool = False, part: str = "", first_seconds: float | None = None) -> dict[str, Any]:
        if effect not in ("before", "after"):
            raise ValueError(f"probes.work effect={effect!r}: use 'before' or 'after' the work")
        for name, value in (("seconds", seconds), ("first_seconds", first_seconds)):
            if value is not None and not 0.0 <= float(value) <= MAX_SECONDS:
                raise ValueError(f"probes.work {name}={value!r}: use 0..{MAX_SECONDS:.0f}")
        if first_seconds is not None and not (self.request.delivery_info or {}).get("redelivered"):
            seconds = first_seconds
        started = time.time()
        if fail:
            time.sleep(float(seconds))
            raise ProbeFailed(f"probe {key} was asked to fail")
        idem = f"{PROBE_EFFECT}:{key}:{part}" if part else None
        if effect == "before":
            self.apply_effects(self.effect(key, PROBE_EFFECT, idem, started=started, part=part))
        time.sleep(float(seconds))
        if effect == "after":
            self.apply_effects(self.effect(key, PROBE_EFFECT, idem, started=started, part=part))
        return {"key": key, "part": part, "seconds": seconds, "started": started}

    @app.task(base=ServiceTask, bind=True, shared=False, name=COLLECT_TASK)
    def collect(self: ServiceTask, results: list[dict[str, Any]], *, key: str, parts: int) -> dict[str, Any]:
        got = sorted(str(r.get("part")) for r in results)
        if len(got) != parts or len(set(got)) != parts:
            raise ValueError(f"probes.collect for {key}: expected {parts} distinct parts, got {got}")
        self.apply_effects(self.effect(key, COLLECT_EFFECT, parts=got))
        return {"key": key, "parts": got}


def chain_of_probes(app: Celery, key: str, parts: int, *, seconds: float, headers: dict[str, str],
                    first_id: str) -> Any:
    """A chain of `parts` ``probes.work`` steps (parts ``p0``, ``p1``...), each ignoring the result
    of the one before (immutable signatures); the first step's task id is `first_id`."""
    from celery import chain

    steps = [app.signature(PROBE_TASK, kwargs={"key": key, "seconds": seconds, "part": f"p{i}"},
                           options={"headers": dict(headers), **({"task_id": first_id} if i == 0 else {})},
                           immutable=True) for i in range(parts)]
    return chain(*steps)


def chord_of_probes(app: Celery, key: str, parts: int, *, seconds: float, headers: dict[str, str],
                    callback_id: str) -> Any:
    """A chord of `parts` ``probes.work`` headers (parts ``p0``, ``p1``...) and its ``probes.collect`` callback."""
    from celery import chord

    header = [app.signature(PROBE_TASK, kwargs={"key": key, "seconds": seconds, "part": f"p{i}"},
                            options={"headers": dict(headers)}) for i in range(parts)]
    body = app.signature(COLLECT_TASK, kwargs={"key": key, "parts": parts},
                         options={"task_id": callback_id, "headers": dict(headers)})
    return chord(header, body)
