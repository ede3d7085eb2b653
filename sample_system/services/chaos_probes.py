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

``probes.on_error(request, exc, traceback, key=..., seconds=0.0)`` is an error callback
(``link_error``) in Celery's documented form: not bound, called by the worker in the process
that saw the failure with the failed task's request. It applies the effect ``probe.errback``
for `key` on every call (one row per call when the effect store is not idempotent), then works
for `seconds`, so a fault can land after the errback's effect and before the failed task's
message is settled. ``canvas(app, shape, key, ...)`` builds the small canvases of the
error-path matrix (`CANVAS_SHAPES`): each has one step that fails for good and the errback
linked the way a user links it; ``canvas_effects(shape, key)`` lists what it must leave.

Example:
    >>> from sample_system import Settings, make_app
    >>> app = make_app(Settings())
    >>> app.tasks["probes.work"].name, app.amqp.router.route({}, "probes.work")["queue"].name
    ('probes.work', 'default')
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from celery import Celery

from harness.workload import RUN_ID_HEADER
from sample_system.service_task import ServiceTask

PROBE_TASK = "probes.work"
PROBE_EFFECT = "probe.done"
COLLECT_TASK = "probes.collect"
COLLECT_EFFECT = "probe.collected"
ERRBACK_TASK = "probes.on_error"
ERRBACK_EFFECT = "probe.errback"
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


    @app.task(base=ServiceTask, shared=False, name=ERRBACK_TASK)
    def on_error(request: Any, exc: BaseException, traceback: Any, *, key: str,
                 seconds: float = 0.0) -> None:
        # Not bound: Celery calls a bound errback the old way, with only the task id, and a
        # (self, request, exc, traceback) signature then fails with a TypeError, never called.
        if not 0.0 <= float(seconds) <= MAX_SECONDS:
            raise ValueError(f"probes.on_error seconds={seconds!r}: use 0..{MAX_SECONDS:.0f}")
        # Called inline, the errback has no task id of its own: its effect names the failed task.
        failed = getattr(request, "id", None)
        run_id = getattr(request, RUN_ID_HEADER, None)
        effect = on_error.effect(key, ERRBACK_EFFECT, exception=type(exc).__name__)
        on_error.apply_effects(dataclasses.replace(effect, task_id=failed, run_id=effect.run_id or run_id))
        time.sleep(float(seconds))


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


#: The canvases of the error-path matrix: shape -> (the parts whose probes must succeed, what it is).
#: Every shape has exactly one probe that fails for good (part ``...f``) and one errback.
CANVAS_SHAPES: dict[str, tuple[tuple[str, ...], str]] = {
    # failure mode 15: where the errback is linked and what fails
    "chain_mid_fails": (("s0",), "chain(s0, s1 fails, s2).on_error(errback)"),
    "group_fails": (("g0",), "group(g0, g1 fails).on_error(errback)"),
    "chord_header_fails": (("h1",), "chord([h0 fails, h1], collect).on_error(errback)"),
    "chord_in_chain": (("s0", "h1"), "chain(s0, chord([h0 fails, h1], collect), s2).on_error(errback)"),
    # failure mode 13: a chain in the chord's header whose first step fails
    "chord_chain_head_fails": (("c1s0", "c1s1"),
                               "chord([chain(c0s0 fails, c0s1), chain(c1s0, c1s1)], collect).on_error(errback)"),
    "chord_chain_group_step": (("c1s0", "c1s1"), "chord([chain(c0s0 fails, group(c0g0, c0g1), c0s2), "
                                                 "chain(c1s0, c1s1)], collect).on_error(errback) (celery #9674)"),
    "chord_chain_ends_in_group": (("c1s0", "c1s1"), "chord([chain(c0s0 fails, group(c0g0, c0g1)), "
                                                    "chain(c1s0, c1s1)], collect).on_error(errback)"),
    "chord_chain_head_ignores_result": (("c1s0", "c1s1"), "chord([chain(c0s0 fails, ignore_result=True; c0s1), "
                                                          "chain(c1s0, c1s1)], collect).on_error(errback)"),
}


def canvas_effects(shape: str, key: str) -> tuple[str, ...]:
    """What a canvas of `shape` for unit `key` must leave exactly once: each succeeding probe's
    ``probe.done`` and one ``probe.errback`` (the callback never runs: a step failed)."""
    if shape not in CANVAS_SHAPES:
        raise ValueError(f"unknown canvas shape {shape!r}: use one of {sorted(CANVAS_SHAPES)}")
    parts, _ = CANVAS_SHAPES[shape]
    return (*(f"{PROBE_EFFECT}:{key}:{p}" for p in parts), f"{ERRBACK_EFFECT}:{key}")


def canvas(app: Celery, shape: str, key: str, *, headers: dict[str, str], seconds: float = 0.0,
           errback_seconds: float = 0.0, unlock_max_retries: int | None = None) -> Any:
    """The canvas of `shape` (see `CANVAS_SHAPES`) for unit `key`, ready for ``apply_async()``.

    Every probe is an immutable signature carrying `headers`; the failing one works `seconds`
    like the others. `unlock_max_retries` bounds ``celery.chord_unlock`` for the chord shapes
    (``chord.apply_async(max_retries=...)``; Celery's default polls for ever)."""
    from celery import chain, chord, group

    if shape not in CANVAS_SHAPES:
        raise ValueError(f"unknown canvas shape {shape!r}: use one of {sorted(CANVAS_SHAPES)}")

    def probe(part: str, fail: bool = False, **options: Any) -> Any:
        return app.signature(PROBE_TASK, kwargs={"key": key, "seconds": seconds, "part": part, "fail": fail},
                             options={"headers": dict(headers), **options}, immutable=True)

    def collect(parts: int) -> Any:
        return app.signature(COLLECT_TASK, kwargs={"key": key, "parts": parts}, options={"headers": dict(headers)})

    errback = app.signature(ERRBACK_TASK, kwargs={"key": key, "seconds": errback_seconds},
                            options={"headers": dict(headers)})
    if shape == "chain_mid_fails":
        return chain(probe("s0"), probe("s1f", fail=True), probe("s2")).on_error(errback)
    if shape == "group_fails":
        return group(probe("g0"), probe("g1f", fail=True)).on_error(errback)
    if shape == "chord_header_fails":
        c = chord([probe("h0f", fail=True), probe("h1")], collect(2)).on_error(errback)
    elif shape == "chord_in_chain":
        return chain(probe("s0"), chord([probe("h0f", fail=True), probe("h1")], collect(2)),
                     probe("s2")).on_error(errback)
    else:
        healthy = chain(probe("c1s0"), probe("c1s1"))
        if shape == "chord_chain_head_fails":
            first = chain(probe("c0s0f", fail=True), probe("c0s1"))
        elif shape == "chord_chain_group_step":
            first = chain(probe("c0s0f", fail=True), group(probe("c0g0"), probe("c0g1")), probe("c0s2"))
        elif shape == "chord_chain_ends_in_group":
            first = chain(probe("c0s0f", fail=True), group(probe("c0g0"), probe("c0g1")))
        else:  # chord_chain_head_ignores_result
            first = chain(probe("c0s0f", fail=True, ignore_result=True), probe("c0s1"))
        c = chord([first, healthy], collect(2)).on_error(errback)
    if unlock_max_retries is not None:
        c = c.set(max_retries=unlock_max_retries)
    return c
