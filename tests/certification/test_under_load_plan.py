"""How a catalogue scenario is moved under load: pure planning, no servers."""

from __future__ import annotations

import pytest

from harness.certification import get, select
from harness.certification.under_load import WARMUP_S, load_duration_s, locustfile_of, shift_schedule
from harness.errors import ConfigError


def test_timed_faults_land_after_the_warm_up_and_the_load_outlasts_their_heal() -> None:
    s = shift_schedule(get("broker_outage_proxy_down").schedule, rate_per_s=10)
    (sf,) = s.faults
    assert sf.at_s == pytest.approx(0.3 + WARMUP_S)
    assert load_duration_s(s) >= sf.at_s + sf.duration_s + 5


def test_triggered_faults_wait_for_the_warm_ups_worth_of_executions() -> None:
    before = get("worker_child_sigkill").schedule.faults[0].trigger
    after = shift_schedule(get("worker_child_sigkill").schedule, rate_per_s=10).faults[0].trigger
    assert before is not None and after is not None
    assert after.nth == before.nth + int(3 * 10 * WARMUP_S) and after.event == before.event


def test_every_quick_schedule_survives_the_shift_and_a_fault_free_one_still_loads() -> None:
    for sc in select("load"):
        s = shift_schedule(sc.schedule, rate_per_s=25)
        assert len(s.faults) == len(sc.schedule.faults)
        assert load_duration_s(s) >= 12.0
    assert [s.name for s in select("load")] == [s.name for s in select("quick")]


def test_a_workload_without_a_locustfile_is_told_what_to_add() -> None:
    class NoLocust:
        pass

    with pytest.raises(ConfigError, match="`locustfile` attribute"):
        locustfile_of(NoLocust())

    class Missing:
        locustfile = "/nonexistent/locustfile.py"

    with pytest.raises(ConfigError, match="does not exist"):
        locustfile_of(Missing())
