"""Fault kinds and schedules as data: JSON round trips, validation errors that name the fix, triggers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError, InvalidSchedule
from harness.faults import (
    FAULT_KINDS,
    BackendOutage,
    Bandwidth,
    BrokerOutage,
    ColdShutdown,
    KillWorker,
    KillWorkerChild,
    Latency,
    LimitData,
    MemoryAlarm,
    PartnerApiFault,
    PauseWorker,
    ResetPeer,
    RolePartition,
    ScaleWorkers,
    Schedule,
    ScheduledFault,
    Slicer,
    Trigger,
    WarmShutdown,
    after_publishes,
    at,
    fault_from_dict,
    on_effect,
    on_execute,
    on_success,
    when,
)

ONE_OF_EACH = [
    BrokerOutage("blackhole"), BackendOutage("kill_restart"), RolePartition("producers", "blackhole"),
    Latency("worker_backend", ms=250, jitter_ms=20, direction="to_client"), Bandwidth("broker", kb_per_s=8),
    ResetPeer("worker_broker", after_ms=100), Slicer("producer_broker", 16, 4, 50), LimitData("backend", bytes=100),
    PartnerApiFault("latency", proxy="partner_api", ms=300), MemoryAlarm(watermark=0.000001),
    KillWorkerChild(task_name="engine.slow", worker="w1", wait_s=3), KillWorker(worker="*", restart=False),
    WarmShutdown(worker="w2", timeout_s=5), ColdShutdown(), PauseWorker("w1"), ScaleWorkers(count=3),
]


def test_the_examples_here_are_of_known_kinds() -> None:
    assert {f.kind for f in ONE_OF_EACH} <= set(FAULT_KINDS)


# Every kind, with its defaults (a new kind is covered with no line here) and with the options above.
@pytest.mark.parametrize("fault", [cls() for cls in FAULT_KINDS.values()] + ONE_OF_EACH,
                         ids=lambda f: f.kind)
def test_fault_json_round_trip(fault) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(fault.to_dict()))
    assert doc["kind"] == fault.kind
    assert fault_from_dict(doc) == fault


@pytest.mark.parametrize(("build", "message"), [
    (lambda: BrokerOutage("unplug"), "mode must be one of proxy_down, blackhole, kill_restart, graceful_stop"),
    (lambda: RolePartition("worker broker"), "role must be one of"),
    (lambda: RolePartition("workers", mode="kill_restart"), "mode must be one of proxy_down, blackhole"),
    (lambda: Latency(ms=12.5), "ms must be a whole number >= 0, not 12.5"),
    (lambda: Latency(direction="up"), "direction must be one of both, to_server, to_client"),
    (lambda: Bandwidth(kb_per_s=-3), "kb_per_s must be a whole number > 0"),
    (lambda: Slicer(average_size=4, size_variation=4), "size_variation (4) must be smaller than average_size (4)"),
    (lambda: LimitData(bytes=0), "bytes must be a whole number > 0"),
    (lambda: MemoryAlarm(watermark=2), "watermark must be a fraction of memory between 0 and 1"),
    (lambda: KillWorkerChild(task_name=""), "task_name must be a registered task name or None"),
    (lambda: KillWorker(worker=""), "worker must be a worker's node name"),
    (lambda: KillWorker(restart="yes"), "restart must be True or False"),
    (lambda: ScaleWorkers(count=0), "count must be a whole number > 0"),
    (lambda: PartnerApiFault(mode="slow"), "mode must be one of down, blackhole, latency, reset_peer"),
])
def test_invalid_faults_say_how_to_fix(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSchedule, match=None) as err:
        build()
    assert message in str(err.value)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)


def test_fault_from_dict_rejects_unknown_kinds_and_options() -> None:
    with pytest.raises(InvalidSchedule, match="unknown fault kind 'unplug': use one of broker_outage"):
        fault_from_dict({"kind": "unplug"})
    with pytest.raises(InvalidSchedule, match=r"latency has no option\(s\) \['latency_ms'\]; its options are"):
        fault_from_dict({"kind": "latency", "latency_ms": 5})
    with pytest.raises(InvalidSchedule, match="must be a JSON object"):
        fault_from_dict(["latency"])  # type: ignore[arg-type]


def test_schedule_assigns_ids_and_round_trips() -> None:
    s = Schedule.of(at(1, Latency(ms=50), duration_s=2), when(on_execute("engine.slow"), KillWorkerChild(), id="kill"),
                    at(0.5, MemoryAlarm(), duration_s=1), when(after_publishes(10, delay_s=0.2), KillWorker()))
    assert [sf.id for sf in s] == ["f1", "kill", "f2", "f3"]
    assert Schedule.from_json(s.to_json()) == s
    assert Schedule.from_dict(json.loads(s.to_json())["faults"]) == s
    assert s.end_s == 3.0
    assert s.horizon_s == pytest.approx(60.2)
    assert s.kinds == ("latency", "kill_worker_child", "memory_alarm", "kill_worker")
    assert "kill: kill_worker_child" in s.describe()


def test_schedule_rejects_overlaps_on_one_resource_and_allows_disjoint_ones() -> None:
    with pytest.raises(InvalidSchedule, match="f1 .* and f2 .* overlap on proxy:worker_broker"):
        Schedule.of(at(0, RolePartition("worker_broker"), duration_s=5), at(4, BrokerOutage("proxy_down"), duration_s=1))
    with pytest.raises(InvalidSchedule, match="overlap on worker:\\*"):
        Schedule.of(at(0, PauseWorker("w1"), duration_s=5), at(1, KillWorker(worker="*")))
    with pytest.raises(InvalidSchedule, match="overlap on server:broker"):
        Schedule.of(at(0, BrokerOutage("kill_restart"), duration_s=5), at(1, BrokerOutage("graceful_stop"), duration_s=1))
    # back to back, other roles, other workers: fine
    Schedule.of(at(0, RolePartition("worker_broker"), duration_s=5), at(5, RolePartition("worker_broker"), duration_s=1),
                at(1, RolePartition("producer_broker"), duration_s=3), at(0, PauseWorker("w1"), duration_s=5),
                at(1, KillWorker("w2")))


def test_schedule_rejects_malformed_entries() -> None:
    with pytest.raises(InvalidSchedule, match="exactly one of at_s .* or trigger"):
        ScheduledFault(Latency())
    with pytest.raises(InvalidSchedule, match="exactly one of at_s"):
        ScheduledFault(Latency(), at_s=1, trigger=on_execute())
    with pytest.raises(InvalidSchedule, match="at_s must be seconds >= 0"):
        at(-1, Latency())
    with pytest.raises(InvalidSchedule, match="duration_s must be seconds >= 0"):
        at(1, Latency(), duration_s=float("nan"))
    with pytest.raises(InvalidSchedule, match="ids must be unique"):
        Schedule.of(at(1, Latency(), id="x"), at(9, Latency(), id="x"))
    with pytest.raises(InvalidSchedule, match="needs a fault value"):
        ScheduledFault("latency", at_s=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidSchedule, match="not valid JSON"):
        Schedule.from_json("{")
    with pytest.raises(InvalidSchedule, match="trigger event must be one of execute, effect"):
        Trigger("start")
    with pytest.raises(InvalidSchedule, match="kind= filters effects only"):
        Trigger("execute", kind="charge")
    with pytest.raises(InvalidSchedule, match="nth must be an int >= 1"):
        on_execute(nth=0)


def test_trigger_matching() -> None:
    op = {"f": "effect", "type": "ok", "value": {"name": "engine.slow", "kind": "charge"}}
    assert on_effect("charge").matches(op)
    assert on_effect("charge", task_name="engine.slow").matches(op)
    assert not on_effect("refund").matches(op)
    assert not on_execute("engine.slow").matches(op)
    assert on_execute().matches({"f": "execute", "type": "invoke", "value": {"name": "x"}})
    assert not on_execute().matches({"f": "execute", "type": "ok", "value": {"name": "x"}})
    assert after_publishes(3).matches({"f": "publish", "type": "ok", "value": {}})


def test_success_trigger_matches_a_stored_success_only_and_holds_round_trip() -> None:
    ok = {"f": "execute", "type": "ok", "value": {"name": "probes.work", "state": "SUCCESS"}}
    assert on_success("probes.work").matches(ok)
    assert not on_success("probes.work").matches({**ok, "value": {"name": "probes.work", "state": "IGNORED"}})
    assert not on_success("other").matches(ok)
    assert not on_success().matches({**ok, "type": "invoke"})
    s = Schedule.of(when(on_success("probes.work", hold_s=5), KillWorkerChild()))
    assert Schedule.from_json(s.to_json()) == s and s.faults[0].trigger.hold_s == 5
    assert "(held up to 5 s)" in s.describe()
    assert "hold_s" not in on_success("x").to_dict()  # schedules without holds serialise as before


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Trigger("execute", hold_s=1.0), "after a task's success only"),
    (lambda: Trigger("success", hold_s=1.0, delay_s=0.5), "use one"),
    (lambda: Trigger("success", hold_s=-1), "hold_s must be"),
])
def test_invalid_holds_say_how_to_fix(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSchedule, match=message):
        build()


def test_a_hold_waits_for_its_release_and_no_longer_than_hold_s(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from harness.history import holds

    holds.request_hold(tmp_path, "f1", "success", "probes.work", 3.0)
    threading.Timer(0.3, holds.release, (tmp_path, "f1")).start()
    t = time.monotonic()
    holds.hold_here(tmp_path, "success", "probes.work", "t1")
    assert 0.25 < time.monotonic() - t < 2.0  # held until released, not for the whole 3 s
    holds.request_hold(tmp_path, "f2", "success", None, 0.4)
    holds.release(tmp_path, "f2", "t2")
    t = time.monotonic()
    holds.hold_here(tmp_path, "success", "any.task", "t2")  # f1 released; f2 released for t2 only
    assert time.monotonic() - t < 0.3
    t = time.monotonic()
    holds.hold_here(tmp_path, "success", "any.task", "t3")  # f2 still holds t3: until hold_s
    assert 0.35 < time.monotonic() - t < 2.0


_faults = st.sampled_from(ONE_OF_EACH)
_times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(st.tuples(_faults, _times, st.floats(min_value=0, max_value=100)), max_size=6),
       st.lists(_faults, max_size=3))
def test_any_valid_schedule_survives_json(timed, triggered) -> None:  # type: ignore[no-untyped-def]
    items = [at(t, f, duration_s=d) for f, t, d in timed] + [when(on_execute("x"), f) for f in triggered]
    try:
        s = Schedule.of(*items)
    except InvalidSchedule as exc:
        assert "overlap" in str(exc)
        return
    assert Schedule.from_json(s.to_json()) == s
