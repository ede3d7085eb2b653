"""Fault schedules as data: which faults, when (a time offset or a history event), for how long.

Responsibility: the `Schedule` value a scenario builds, prints, stores and replays. Pure data:
validated when built (unique ids, one of time or trigger, no two overlapping faults holding the
same resource), JSON round trip, no I/O. `harness.faults.nemesis` runs it.

A `Trigger` fires on an op of the run's history, seen as the workers write it:

- ``on_execute("orders.charge")``: a task named so starts executing (``execute`` invoke);
- ``on_effect("charge")``: a task applied a side effect of that kind (``effect`` ok);
- ``on_success("orders.charge", hold_s=5)``: a task succeeded: its result is stored, its
  message not yet acked. With ``hold_s`` the worker waits there (at most that long) until the
  fault is applied, so a kill lands between the result write and the ack
  (`harness.history.holds`);
- ``after_publishes(50)``: the 50th confirmed publish of the run;
- ``on_receive(...)``, ``on_worker_lost()``: likewise.

``nth`` counts matching ops; ``delay_s`` waits after the op; a trigger that has not fired
``timeout_s`` seconds after the schedule started is skipped (recorded: the fault never bit).

Example:
    >>> from harness.faults.kinds import KillWorkerChild, Latency
    >>> s = Schedule.of(at(1.0, Latency("worker_broker", ms=100), duration_s=2.0),
    ...                 when(on_effect("charge"), KillWorkerChild()))
    >>> [sf.id for sf in s], s.end_s
    (['f1', 'f2'], 3.0)
    >>> Schedule.from_json(s.to_json()) == s
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import InvalidSchedule
from harness.faults.kinds import Fault, fault_from_dict
from harness.history.ops import Op

__all__ = [
    "EVENTS",
    "Schedule",
    "ScheduledFault",
    "Trigger",
    "after_publishes",
    "at",
    "on_effect",
    "on_execute",
    "on_receive",
    "on_success",
    "on_worker_lost",
    "when",
]

#: Trigger events and the history op each one waits for: (f, type).
EVENTS: Mapping[str, tuple[str, str]] = {
    "execute": ("execute", "invoke"),
    "effect": ("effect", "ok"),
    "publish": ("publish", "ok"),
    "receive": ("receive", "ok"),
    "worker_lost": ("worker_lost", "ok"),
    # A task's success (execute ok, state SUCCESS): recorded after its result is stored and
    # before its message is acked (with late acks).
    "success": ("execute", "ok"),
}


def _finite(x: Any, *, positive: bool = False) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            and (x > 0 if positive else x >= 0))


@dataclass(frozen=True, slots=True)
class Trigger:
    """Fire when the `nth` history op of `event` (optionally for `task_name` / effect `kind`) appears.

    >>> Trigger("execute", task_name="orders.charge").matches(
    ...     {"f": "execute", "type": "invoke", "value": {"name": "orders.charge"}})
    True
    """

    event: str
    task_name: str | None = None
    kind: str | None = None
    nth: int = 1
    delay_s: float = 0.0
    timeout_s: float = 60.0
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise InvalidSchedule(f"trigger event must be one of {', '.join(EVENTS)}, not {self.event!r}")
        if not isinstance(self.nth, int) or isinstance(self.nth, bool) or self.nth < 1:
            raise InvalidSchedule(f"trigger nth must be an int >= 1 (the 1st, 2nd... matching op), not {self.nth!r}")
        if not _finite(self.delay_s):
            raise InvalidSchedule(f"trigger delay_s must be a number of seconds >= 0, not {self.delay_s!r}")
        if not _finite(self.timeout_s, positive=True):
            raise InvalidSchedule(f"trigger timeout_s must be a number of seconds > 0, not {self.timeout_s!r}")
        if not _finite(self.hold_s):
            raise InvalidSchedule(f"trigger hold_s must be a number of seconds >= 0, not {self.hold_s!r}")
        if self.hold_s and self.event != "success":
            raise InvalidSchedule(f"trigger hold_s holds a worker after a task's success only (on_success); "
                                  f"event {self.event!r} cannot hold")
        if self.hold_s and self.delay_s:
            raise InvalidSchedule("trigger hold_s and delay_s together would hold the worker through the delay: "
                                  "use one (hold_s: the fault lands before the ack)")
        if self.kind is not None and self.event != "effect":
            raise InvalidSchedule(f"trigger kind= filters effects only; for event {self.event!r} use task_name=")
        for name in ("task_name", "kind"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise InvalidSchedule(f"trigger {name} must be a non-empty string or None, not {v!r}")

    def matches(self, op: Op | Mapping[str, Any]) -> bool:
        """Whether history op `op` (an `Op`, or its dict form) is one this trigger counts."""
        f, type_ = EVENTS[self.event]
        op_f: Any
        op_type: Any
        if isinstance(op, Op):
            op_f, op_type, v = op.f, op.type.value, op.value
        else:
            op_f, op_type, v = op.get("f"), op.get("type"), op.get("value")
        if op_f != f or op_type != type_:
            return False
        v = v if isinstance(v, Mapping) else {}
        if self.task_name is not None and v.get("name") != self.task_name:
            return False
        if self.event == "success" and v.get("state") != "SUCCESS":
            return False
        return not (self.kind is not None and v.get("kind") != self.kind)

    def describe(self) -> str:
        what = self.event + (f" of {self.task_name}" if self.task_name else "") + (
            f" kind {self.kind}" if self.kind else "")
        nth = "" if self.nth == 1 else f" #{self.nth}"
        delay = f" + {self.delay_s:g} s" if self.delay_s else ""
        hold = f" (held up to {self.hold_s:g} s)" if self.hold_s else ""
        return f"on {what}{nth}{delay}{hold}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.event, "task_name": self.task_name, "kind": self.kind, "nth": self.nth,
                             "delay_s": self.delay_s, "timeout_s": self.timeout_s}
        if self.hold_s:
            d["hold_s"] = self.hold_s
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trigger:
        known = {"event", "task_name", "kind", "nth", "delay_s", "timeout_s", "hold_s"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidSchedule(f"a trigger has no option(s) {unknown}; its options are {sorted(known)}")
        if "event" not in d:
            raise InvalidSchedule(f"a trigger needs an 'event' (one of {', '.join(EVENTS)})")
        return cls(**dict(d))


def on_execute(task_name: str | None = None, *, nth: int = 1, delay_s: float = 0.0,
               timeout_s: float = 60.0) -> Trigger:
    """When a task (named `task_name`, or any) starts executing.

    >>> on_execute("orders.charge", nth=2).describe()
    'on execute of orders.charge #2'
    """
    return Trigger("execute", task_name=task_name, nth=nth, delay_s=delay_s, timeout_s=timeout_s)


def on_success(task_name: str | None = None, *, nth: int = 1, hold_s: float = 0.0,
               timeout_s: float = 60.0) -> Trigger:
    """When a task (named `task_name`, or any) succeeds: its result is stored, its message
    not acked yet (late acks). With `hold_s` > 0 the worker waits right there until the
    fault is applied (at most `hold_s` s), so the fault lands inside that window.

    >>> on_success("probes.work", hold_s=5).describe()
    'on success of probes.work (held up to 5 s)'
    """
    return Trigger("success", task_name=task_name, nth=nth, hold_s=hold_s, timeout_s=timeout_s)


def on_effect(kind: str | None = None, *, task_name: str | None = None, nth: int = 1, delay_s: float = 0.0,
              timeout_s: float = 60.0) -> Trigger:
    """When a task records a side effect (of `kind`, or any).

    >>> on_effect("payment.charged").event
    'effect'
    """
    return Trigger("effect", task_name=task_name, kind=kind, nth=nth, delay_s=delay_s, timeout_s=timeout_s)


def after_publishes(n: int, *, delay_s: float = 0.0, timeout_s: float = 60.0) -> Trigger:
    """After the `n`-th confirmed publish of the run.

    >>> after_publishes(20).nth
    20
    """
    return Trigger("publish", nth=n, delay_s=delay_s, timeout_s=timeout_s)


def on_receive(task_name: str | None = None, *, nth: int = 1, delay_s: float = 0.0,
               timeout_s: float = 60.0) -> Trigger:
    """When a worker receives a task (named `task_name`, or any).

    >>> on_receive("orders.ship").task_name
    'orders.ship'
    """
    return Trigger("receive", task_name=task_name, nth=nth, delay_s=delay_s, timeout_s=timeout_s)


def on_worker_lost(*, nth: int = 1, delay_s: float = 0.0, timeout_s: float = 60.0) -> Trigger:
    """When a worker reports a lost pool child.

    >>> on_worker_lost(delay_s=0.5).delay_s
    0.5
    """
    return Trigger("worker_lost", nth=nth, delay_s=delay_s, timeout_s=timeout_s)


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """One fault of a schedule: at `at_s` seconds after the start, or on `trigger`; healed
    `duration_s` seconds after it was applied (0: at once; a kill of a pool child has nothing
    to heal). `id` names it in the history (assigned ``f1``, ``f2``... by `Schedule`)."""

    fault: Fault
    at_s: float | None = None
    trigger: Trigger | None = None
    duration_s: float = 0.0
    id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.fault, Fault):
            raise InvalidSchedule(f"a scheduled fault needs a fault value (e.g. Latency(...)), not {self.fault!r}")
        if (self.at_s is None) == (self.trigger is None):
            raise InvalidSchedule(f"{self.fault.kind}: give exactly one of at_s (seconds after the start) or "
                                  "trigger (e.g. on_execute('task')), not both or neither")
        if self.at_s is not None and not _finite(self.at_s):
            raise InvalidSchedule(f"{self.fault.kind}: at_s must be seconds >= 0 after the start, not {self.at_s!r}")
        if self.trigger is not None and not isinstance(self.trigger, Trigger):
            raise InvalidSchedule(f"{self.fault.kind}: trigger must be a Trigger (on_execute(...), ...), "
                                  f"not {self.trigger!r}")
        if not _finite(self.duration_s):
            raise InvalidSchedule(f"{self.fault.kind}: duration_s must be seconds >= 0, not {self.duration_s!r}")
        if not isinstance(self.id, str):
            raise InvalidSchedule(f"{self.fault.kind}: id must be a string, not {self.id!r}")

    @property
    def window(self) -> tuple[float, float] | None:
        """[start, end] in seconds after the start, for time-based faults."""
        if self.at_s is None:
            return None
        return (float(self.at_s), float(self.at_s) + float(self.duration_s))

    def describe(self) -> str:
        when_ = f"at {self.at_s:g} s" if self.at_s is not None else (self.trigger.describe() if self.trigger else "")
        dur = f" for {self.duration_s:g} s" if self.duration_s else ""
        return f"{self.id}: {self.fault.describe()} {when_}{dur}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fault": self.fault.to_dict(), "at_s": self.at_s,
                "trigger": None if self.trigger is None else self.trigger.to_dict(),
                "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScheduledFault:
        known = {"id", "fault", "at_s", "trigger", "duration_s"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidSchedule(f"a scheduled fault has no option(s) {unknown}; its options are {sorted(known)}")
        if "fault" not in d:
            raise InvalidSchedule("a scheduled fault needs a 'fault' object with a 'kind'")
        trig = d.get("trigger")
        return cls(fault=fault_from_dict(d["fault"]), at_s=d.get("at_s"),
                   trigger=None if trig is None else Trigger.from_dict(trig),
                   duration_s=d.get("duration_s", 0.0), id=d.get("id", ""))


def at(at_s: float, fault: Fault, *, duration_s: float = 0.0, id: str = "") -> ScheduledFault:
    """`fault` applied `at_s` seconds after the start, healed `duration_s` later.

    >>> from harness.faults.kinds import BrokerOutage
    >>> at(2, BrokerOutage("blackhole"), duration_s=5).window
    (2.0, 7.0)
    """
    return ScheduledFault(fault, at_s=at_s, duration_s=duration_s, id=id)


def when(trigger: Trigger, fault: Fault, *, duration_s: float = 0.0, id: str = "") -> ScheduledFault:
    """`fault` applied when `trigger` fires, healed `duration_s` later.

    >>> from harness.faults.kinds import KillWorkerChild
    >>> when(on_effect("charge"), KillWorkerChild()).trigger.describe()
    'on effect kind charge'
    """
    return ScheduledFault(fault, trigger=trigger, duration_s=duration_s, id=id)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The faults of a run. Ids are assigned (``f1``, ``f2``, ...) where not given.

    Two time-based faults whose windows overlap may not hold the same resource (the same proxy,
    the broker process, the same worker): healing one would undo part of the other.

    >>> from harness.faults.kinds import RolePartition
    >>> Schedule.of(at(0, RolePartition("worker_broker"), duration_s=5),
    ...             at(2, RolePartition("workers"), duration_s=5))
    Traceback (most recent call last):
    ...
    harness.errors.InvalidSchedule: f1 (role_partition 0-5 s) and f2 (role_partition 2-7 s) overlap on proxy:worker_broker: shift one of them or merge them into one fault
    """

    faults: tuple[ScheduledFault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        items = tuple(self.faults)
        for sf in items:
            if not isinstance(sf, ScheduledFault):
                raise InvalidSchedule(f"a Schedule holds ScheduledFault values (at(...), when(...)), not {sf!r}")
        taken = {sf.id for sf in items if sf.id}
        out: list[ScheduledFault] = []
        n = 0
        for sf in items:
            if not sf.id:
                n += 1
                while f"f{n}" in taken:
                    n += 1
                sf = replace(sf, id=f"f{n}")
                taken.add(sf.id)
            out.append(sf)
        ids = [sf.id for sf in out]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InvalidSchedule(f"fault ids must be unique; {dupes} are used twice")
        timed = [sf for sf in out if sf.window is not None]
        for i, a in enumerate(timed):
            for b in timed[i + 1:]:
                (a0, a1), (b0, b1) = a.window, b.window  # type: ignore[misc]
                if a0 < b1 and b0 < a1:
                    shared = sorted(set(a.fault.resources) & set(b.fault.resources)
                                    | _wildcard_overlap(a.fault.resources, b.fault.resources))
                    if shared:
                        raise InvalidSchedule(
                            f"{a.id} ({a.fault.kind} {a0:g}-{a1:g} s) and {b.id} ({b.fault.kind} {b0:g}-{b1:g} s) "
                            f"overlap on {shared[0]}: shift one of them or merge them into one fault")
        object.__setattr__(self, "faults", tuple(out))

    @classmethod
    def of(cls, *faults: ScheduledFault) -> Schedule:
        """A schedule of the given faults, in order."""
        return cls(tuple(faults))

    def __iter__(self) -> Iterator[ScheduledFault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def get(self, fault_id: str) -> ScheduledFault:
        for sf in self.faults:
            if sf.id == fault_id:
                return sf
        raise KeyError(f"no fault {fault_id!r} in this schedule: ids are {[sf.id for sf in self.faults]}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(sf.fault.kind for sf in self.faults))

    @property
    def end_s(self) -> float:
        """When the last time-based fault is healed (seconds after the start; 0 when none)."""
        ends = [sf.window[1] for sf in self.faults if sf.window is not None]
        return max(ends, default=0.0)

    @property
    def horizon_s(self) -> float:
        """An upper bound on how long the schedule can run: time-based ends and trigger timeouts
        plus their delays and durations."""
        trig = [sf.trigger.timeout_s + sf.trigger.delay_s + sf.duration_s for sf in self.faults if sf.trigger]
        return max([self.end_s, *trig], default=0.0)

    def describe(self) -> str:
        return "\n".join(sf.describe() for sf in self.faults) or "(no faults)"

    def to_dict(self) -> dict[str, Any]:
        return {"faults": [sf.to_dict() for sf in self.faults]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any]) -> Schedule:
        items = d.get("faults", None) if isinstance(d, Mapping) else d
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise InvalidSchedule("a schedule is {\"faults\": [...]} or a list of scheduled faults")
        return cls(tuple(ScheduledFault.from_dict(x) for x in items))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidSchedule(f"the schedule is not valid JSON: {exc}") from None
        return cls.from_dict(doc)


def _wildcard_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> set[str]:
    # "worker:*" holds every worker.
    wa = {r for r in a if r.startswith("worker:")}
    wb = {r for r in b if r.startswith("worker:")}
    if wa and wb and ("worker:*" in wa or "worker:*" in wb):
        return {"worker:*"}
    return set()
