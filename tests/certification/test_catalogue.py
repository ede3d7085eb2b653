"""The certification catalogue and command: pure checks and usage errors (no stack needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.certification import CATALOGUE, get, select
from harness.errors import ConfigError
from harness.faults import Schedule


def test_names_are_unique_and_schedules_round_trip():
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    for s in CATALOGUE:
        assert Schedule.from_json(s.schedule.to_json()) == s.schedule
        json.dumps(s.to_dict())


def test_quick_is_a_subset_of_full_and_covers_each_fault_family():
    quick = {s.name for s in select("quick")}
    full = {s.name for s in select("full")}
    assert quick < full
    kinds = {sf.fault.kind for s in select("quick") for sf in s.schedule.faults}
    assert {"kill_worker_child", "kill_worker", "broker_outage", "warm_shutdown", "reset_peer",
            "backend_outage", "partner_api_fault"} <= kinds


def test_every_fault_scenario_has_a_fault_and_the_baseline_has_none():
    # The burst is its own fault: demand above the tasks' rate limits, no injected failure.
    for s in CATALOGUE:
        assert bool(s.schedule.faults) == (s.name not in ("baseline", "rate_limit_burst")), s.name


def test_unknown_profile_and_scenario_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        select("fast")
    with pytest.raises(ConfigError, match="unknown scenario"):
        get("nope")
    with pytest.raises(ConfigError, match=r"unknown scenario\(s\) \['nope'\]"):
        select("quick", ["nope"])


@pytest.mark.parametrize(("args", "message"), [
    (["--workload", "no_such_module:W"], "cannot import --workload module 'no_such_module'"),
    (["--workload", "harness.errors:NotThere"], "has no attribute 'NotThere'"),
    (["--workload", "harness.errors:ConfigError"], "is not a harness.workload.Workload"),
    (["--profile", "quick", "--only", "nope"], "unknown scenario(s) ['nope']"),
])
def test_certify_usage_errors_exit_2_with_the_fix(args, message):
    r = subprocess.run([sys.executable, "-m", "harness", "certify", "--report", "/nonexistent/x", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
