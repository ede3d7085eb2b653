"""harness.faults.generate: every generated schedule is valid, stays inside its space and round-trips JSON."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import InvalidSchedule
from harness.faults import (
    FAULT_KINDS,
    KillWorker,
    Latency,
    RolePartition,
    Schedule,
    at,
    on_effect,
    when,
)
from harness.faults.generate import (
    DEFAULT_KINDS,
    FaultSpace,
    _compatible,
    find_failing_schedule,
    schedules,
)

SAMPLE_SPACE = FaultSpace(kinds=("kill_worker_child", "reset_peer", "kill_worker", "latency"),
                          roles=("worker_broker", "workers"), task_names=("payments.charge",),
                          effect_kinds=("payment.charged", "inventory.reserved"), max_faults=4,
                          trigger_timeout_s=12.0)


def _inside(space: FaultSpace, s: Schedule) -> None:
    assert space.min_faults <= len(s) <= space.max_faults
    for sf in s:
        f = sf.fault
        assert f.kind in space.kinds
        if hasattr(f, "role"):
            assert f.role in space.roles
        if hasattr(f, "worker"):
            assert f.worker in space.workers
        if getattr(f, "restart", True) is not True:
            assert not space.restart_workers
        if sf.trigger is None:
            assert 0 <= sf.at_s <= space.horizon_s
        else:
            t = sf.trigger
            assert t.event in space.events
            assert t.timeout_s == space.trigger_timeout_s
            if t.event == "effect":
                assert t.kind in (None, *space.effect_kinds)
            if t.event in ("execute", "receive"):
                assert t.task_name in (None, *space.task_names)
        assert 0 <= sf.duration_s <= space.max_duration_s


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([FaultSpace(), SAMPLE_SPACE, FaultSpace(kinds=tuple(FAULT_KINDS), events=(), max_faults=6,
                                                                restart_workers=False)]).flatmap(
    lambda sp: st.tuples(st.just(sp), schedules(sp))))
def test_generated_schedules_are_valid_inside_the_space_and_round_trip(space_and_schedule):
    space, s = space_and_schedule
    # Building it again runs every validation (kinds, triggers, overlaps on shared resources).
    again = Schedule.from_dict(s.to_dict())
    assert again == s
    assert Schedule.from_json(s.to_json()) == s
    assert [sf.id for sf in s] == [f"f{i}" for i in range(1, len(s) + 1)]
    _inside(space, s)


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_every_fault_kind_can_be_generated(kind):
    space = FaultSpace(kinds=(kind,), max_faults=1)

    @settings(max_examples=20, deadline=None)
    @given(schedules(space))
    def check(s):
        assert [sf.fault.kind for sf in s] == [kind]
        assert Schedule.from_json(s.to_json()) == s

    check()


def test_time_offsets_only_when_the_space_lists_no_events():
    space = FaultSpace(kinds=("latency",), events=())

    @settings(max_examples=50, deadline=None)
    @given(schedules(space))
    def check(s):
        assert all(sf.trigger is None and sf.at_s is not None for sf in s)

    check()


def test_conflicting_faults_keep_the_first_and_drop_the_later():
    a = at(0.0, RolePartition("worker_broker"), duration_s=3.0)
    b = at(1.0, RolePartition("workers"), duration_s=3.0)          # shares proxy:worker_broker with a
    c = at(1.0, Latency("producer_broker", ms=10), duration_s=3.0)  # no shared resource
    s = _compatible([a, b, c])
    assert [sf.fault for sf in s] == [a.fault, c.fault]
    assert [sf.id for sf in s] == ["f1", "f2"]
    # Without the first, the second is kept: deleting a fault while shrinking can bring another back.
    assert [sf.fault for sf in _compatible([b, c])] == [b.fault, c.fault]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kinds": ("latency", "teleport")}, "FaultSpace.kinds: 'teleport' is not one of broker_outage"),
    ({"kinds": ()}, "FaultSpace.kinds is empty"),
    ({"kinds": ("latency",), "roles": ()}, r"FaultSpace.roles is empty but kinds \['latency'\] need one"),
    ({"kinds": ("kill_worker",), "workers": ()}, "FaultSpace.workers is empty"),
    ({"events": ("execute", "explode")}, "FaultSpace.events: 'explode' is not one of execute, effect"),
    ({"outage_modes": ("unplug",)}, "FaultSpace.outage_modes: 'unplug' is not one of proxy_down"),
    ({"min_faults": 3, "max_faults": 2}, r"max_faults \(2\) must be >= 1 and >= min_faults \(3\)"),
    ({"max_faults": 0}, "max_faults"),
    ({"horizon_s": -1}, "FaultSpace.horizon_s must be seconds >= 0"),
    ({"kinds": ("latency", "latency")}, "FaultSpace.kinds lists a value twice"),
    ({"roles": "worker_broker"}, "FaultSpace.roles must be a tuple of names"),
])
def test_a_bad_space_is_refused_with_the_fix(kwargs, message):
    with pytest.raises(InvalidSchedule, match=message):
        FaultSpace(**kwargs)


def test_space_round_trips_as_a_dict():
    assert FaultSpace.from_dict(SAMPLE_SPACE.to_dict()) == SAMPLE_SPACE
    assert FaultSpace().kinds == DEFAULT_KINDS
    with pytest.raises(InvalidSchedule, match=r"FaultSpace has no option\(s\) \['flavour'\]"):
        FaultSpace.from_dict({"flavour": "x"})


def _culprit(s: Schedule) -> bool:
    return any(sf.fault.kind == "kill_worker" and sf.trigger is not None and sf.trigger.event == "effect" for sf in s)


def test_search_shrinks_to_the_single_culprit_fault_for_every_seed():
    first_sizes = []
    for seed in range(8):
        seen: list[Schedule] = []

        def fails(s: Schedule, seen: list[Schedule] = seen) -> bool:
            seen.append(s)
            return _culprit(s)

        found = find_failing_schedule(SAMPLE_SPACE, fails, seed=seed, max_examples=60)
        if found is None:
            continue
        idx = next(i for i, s in enumerate(seen) if _culprit(s))
        first = seen[idx]
        first_sizes.append(len(first))
        if len(first) > 1:  # deletion comes first: the next call is the failing schedule without its first fault
            assert [sf.fault for sf in seen[idx + 1]] == [sf.fault for sf in first.faults[1:]]
        assert len(found) == 1, found.describe()
        (only,) = found
        assert only.fault == KillWorker() and only.trigger is not None and only.trigger.event == "effect"
    assert len(first_sizes) >= 4
    assert max(first_sizes) >= 2, "no seed found the culprit among other faults: shrinking was not exercised"


def test_search_returns_none_when_nothing_fails_and_stops_at_max_examples():
    calls: list[Schedule] = []
    assert find_failing_schedule(SAMPLE_SPACE, lambda s: calls.append(s) is not None, seed=1, max_examples=7) is None
    assert 1 <= len(calls) <= 7


def test_search_is_repeatable_for_a_seed():
    runs = []
    for _ in range(2):
        seen: list[str] = []
        find_failing_schedule(SAMPLE_SPACE, lambda s, seen=seen: seen.append(s.to_json()) is not None, seed=5,
                              max_examples=10)
        runs.append(seen)
    assert runs[0] == runs[1]


def test_a_seed_draws_the_same_schedules_whatever_modules_are_loaded(tmp_path, monkeypatch):
    # Hypothesis mixes numbers found in loaded local modules into its draws; the search keeps
    # them out, so the CLI and pytest draw the same schedules for one seed.
    def draws() -> list[str]:
        seen: list[str] = []
        find_failing_schedule(SAMPLE_SPACE, lambda s: seen.append(s.to_json()) is not None, seed=2, max_examples=25)
        return seen

    before = draws()
    (tmp_path / "chaos_constants_probe.py").write_text(
        "VALUES = [" + ", ".join(str(n) for n in (3, 7, 13, 17, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73,
                                                   79, 83, 89, 97, 101, 211, 307, 401, 509, 613, 709, 811, 919)) + "]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import chaos_constants_probe  # noqa: F401 - loaded for its constants

    assert draws() == before


def test_search_reports_the_culprit_even_when_a_replay_disagrees():
    # A flaky system: the culprit fails only the first time each schedule is seen, so
    # Hypothesis's final replay of its minimal example passes (FlakyFailure inside).
    results = []
    for seed in range(6):
        seen: set[str] = set()

        def fails(s: Schedule, seen: set[str] = seen) -> bool:
            key = s.to_json()
            first = key not in seen
            seen.add(key)
            return first and _culprit(s)

        found = find_failing_schedule(SAMPLE_SPACE, fails, seed=seed, max_examples=60)
        if found is not None:
            assert _culprit(found)
            results.append(found)
    assert results, "no seed met the culprit"


def test_search_rejects_bad_arguments():
    with pytest.raises(InvalidSchedule, match="fails must be a function"):
        find_failing_schedule(SAMPLE_SPACE, "yes", max_examples=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidSchedule, match="max_examples must be an int >= 1"):
        find_failing_schedule(SAMPLE_SPACE, lambda s: False, max_examples=0)


def test_triggered_culprit_example_reads_well():
    s = Schedule.of(when(on_effect("payment.charged"), KillWorker()))
    assert s.describe() == "f1: kill_worker(worker=None, restart=True) on effect kind payment.charged"
