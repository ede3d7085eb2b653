"""harness.explore with a stand-in runner: the driver finds, shrinks and writes a replayable reproducer.

These are unit tests of the exploration driver: the runner is a plain function from a Schedule to
a RunResult, so hundreds of "runs" take a second. The real exploration on the sample system is
scenarios/test_explore.py (marker `explore`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import Expectations, Validity, Verdict
from harness.cli import add_explore_arguments, add_replay_arguments, explore_main, parse_variant
from harness.errors import ConfigError, UnsupportedFault
from harness.explore import ExploreResult, Reproducer, Target, explore, failing_verdicts, replay
from harness.faults import KillWorker, Schedule
from harness.faults.generate import FaultSpace
from harness.run import RunConfig, RunResult
from harness.workload import Deployment

SPACE = FaultSpace(kinds=("latency", "reset_peer", "kill_worker_child", "kill_worker"),
                   roles=("worker_broker",), effect_kinds=("payment.charged",), max_faults=4, trigger_timeout_s=12.0)
DEPLOYMENT = "sample_system.deploy:prepare"


def _result(schedule: Schedule, failing: dict[str, tuple[Validity, tuple[str, ...]]] | None = None,
            n: int = 0) -> RunResult:
    verdicts = {"lost_tasks": Verdict("lost_tasks", Validity.TRUE, counts={"lost": 0}),
                "duplicates": Verdict("duplicates", Validity.TRUE, counts={"duplicate_effect": 0}),
                "redelivery": Verdict("redelivery", Validity.UNKNOWN, notes=("not exercised",))}
    for name, (valid, kinds) in (failing or {}).items():
        verdicts[name] = Verdict(name, valid, counts={k: 2 for k in kinds},
                                 counterexamples=tuple({"kind": k, "allowed": False} for k in kinds))
    worst = Validity.TRUE.merge(*(v.valid for v in verdicts.values()))
    return RunResult(f"run-fake-{n}", worst, verdicts, schedule, (), Expectations(), {"total_s": 0.0}, {}, True, None)


def _kills_after_effect(s: Schedule) -> bool:
    return any(sf.fault.kind == "kill_worker" and sf.trigger is not None and sf.trigger.event == "effect" for sf in s)


class FakeRunner:
    """Fails like a non-idempotent system: a worker killed right after an effect duplicates it."""

    def __init__(self, rules: list[tuple[Callable[[Schedule], bool], str, str]] | None = None) -> None:
        self.rules = rules or [(_kills_after_effect, "duplicates", "duplicate_effect")]
        self.calls: list[Schedule] = []

    def __call__(self, schedule: Schedule) -> RunResult:
        self.calls.append(schedule)
        failing = {checker: (Validity.FALSE, (kind,)) for culprit, checker, kind in self.rules if culprit(schedule)}
        return _result(schedule, failing, len(self.calls))


def _explore(tmp: Path, runner: Any, **kw: Any) -> ExploreResult:
    kw.setdefault("max_examples", 60)
    kw.setdefault("space", SPACE)
    kw.setdefault("variant", {"idempotent_effects": False})
    return explore(DEPLOYMENT, None, out_dir=tmp, runner=runner, **kw)


def test_a_culprit_among_other_faults_is_shrunk_to_itself_and_written_with_its_replay_command(tmp_path):
    shrunk_from = []
    for seed in range(10):
        out = tmp_path / f"seed{seed}"
        runner = FakeRunner()
        result = _explore(out, runner, seed=seed)
        if not result.found:
            assert not (out / "reproducer.json").exists()
            continue
        doc = json.loads((out / "reproducer.json").read_text())
        # The reproducer holds what the brief asks for, in JSON.
        assert doc["seed"] == seed
        assert doc["variant"] == {"idempotent_effects": False}
        assert doc["n_per_kind"] == 1
        assert doc["failure"] == {"duplicates": {"duplicate_effect": 2}}
        assert doc["command"] == f"celery-chaos replay {out / 'reproducer.json'}"
        assert doc["deployment"] == DEPLOYMENT
        assert doc["target"] == {"checker": "duplicates", "violations": ["duplicate_effect"]}
        assert doc["reproduced"] == {"failed_same_way": 1, "runs": 1}
        # ... and the schedule is the culprit alone.
        schedule = Schedule.from_dict(doc["schedule"])
        assert len(schedule) == 1
        (only,) = schedule
        assert only.fault == KillWorker() and only.trigger is not None and only.trigger.event == "effect"
        # Replaying it (through the same stand-in) fails the same way.
        calls = len(runner.calls)
        repro = Reproducer.read(out / "reproducer.json")
        assert repro.fails_same_way(runner(repro.schedule))
        assert result.reproducer == repro
        shrunk_from.append(len(Schedule.from_dict(doc["found_schedule"])))
        # Every run is logged; a schedule is never run twice except to confirm the result.
        lines = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
        assert len(lines) == result.runs == calls
        keys = [json.dumps(x["schedule"]) for x in lines if x["phase"] != "confirm"]
        assert len(keys) == len(set(keys))
        assert "celery-chaos replay" in result.summary() and "kill_worker" in result.summary()
    assert len(shrunk_from) >= 5
    assert max(shrunk_from) >= 2, "no seed met the culprit among other faults: shrinking was not exercised"


def test_shrinking_keeps_the_first_failure_s_checker(tmp_path):
    # Two bugs: high latency loses tasks, a kill after an effect duplicates it. The target is
    # whichever failed first; the reproducer fails that way, with one fault of the matching kind.
    def slow(s: Schedule) -> bool:
        return any(sf.fault.kind == "latency" and sf.fault.ms >= 300 for sf in s)

    checked = 0
    for seed in range(8):
        runner = FakeRunner([(slow, "lost_tasks", "lost"), (_kills_after_effect, "duplicates", "duplicate_effect")])
        result = _explore(tmp_path / f"s{seed}", runner, seed=seed)
        if not result.found:
            continue
        repro = result.reproducer
        assert repro is not None and len(repro.schedule) == 1
        first = failing_verdicts(runner(repro.found_schedule))
        assert repro.target.checker in first
        assert list(repro.failure) == [repro.target.checker]
        kind = repro.schedule.faults[0].fault.kind
        assert kind == ("latency" if repro.target.checker == "lost_tasks" else "kill_worker")
        checked += 1
    assert checked >= 4


def test_unknown_counts_as_a_failure_only_with_violations():
    s = Schedule()
    assert failing_verdicts(_result(s)) == {}  # redelivery unknown: not exercised
    r = _result(s, {"redelivery": (Validity.UNKNOWN, ("not_redelivered",))})
    assert list(failing_verdicts(r)) == ["redelivery"]
    assert failing_verdicts(r, checkers=("duplicates",)) == {}
    assert Target.of(failing_verdicts(r)) == Target("redelivery", ("not_redelivered",))
    both = _result(s, {"redelivery": (Validity.UNKNOWN, ("x",)), "dlq": (Validity.FALSE, ("y",))})
    assert Target.of(failing_verdicts(both)).checker == "dlq"  # false before unknown


def test_checkers_limit_which_failures_count(tmp_path):
    runner = FakeRunner()
    result = _explore(tmp_path, runner, seed=0, checkers=("lost_tasks",), max_examples=15)
    assert not result.found
    assert result.runs == len(runner.calls) <= 15
    assert json.loads((tmp_path / "explore.json").read_text())["found"] is False


def test_the_time_budget_stops_shrinking_and_keeps_the_smallest_failure_so_far(tmp_path):
    now = [0.0]

    def clock() -> float:
        return now[0]

    class Slow(FakeRunner):
        def __call__(self, schedule: Schedule) -> RunResult:
            now[0] += 10.0  # each "run" takes 10 s of the fake clock
            return super().__call__(schedule)

    # Unbounded first: where the first failure comes and how many runs shrinking takes.
    free = Slow()
    full = _explore(tmp_path / "free", free, seed=4, clock=clock, confirm=0, time_budget_s=1e9)
    first = next(i for i, s in enumerate(free.calls) if _kills_after_effect(s))
    assert full.found and not full.budget_exhausted and len(free.calls) > first + 3
    # A budget that ends just after the first failure: shrinking stops, the failure is kept.
    now[0] = 0.0
    cut = Slow()
    result = _explore(tmp_path / "cut", cut, seed=4, clock=clock, confirm=1, time_budget_s=(first + 1) * 10 + 5)
    assert result.found and result.budget_exhausted
    assert result.runs < full.runs
    assert result.runs <= first + 2 + SPACE.max_faults + 1  # budgeted, deletion pass, one confirmation
    repro = Reproducer.read(tmp_path / "cut" / "reproducer.json")
    assert _kills_after_effect(repro.schedule) and repro.reproduced == (1, 1)
    assert "time budget spent" in result.summary()


def test_a_schedule_the_stack_cannot_run_stops_the_exploration_at_once(tmp_path):
    def refuses(schedule: Schedule) -> RunResult:
        raise UnsupportedFault("kill_worker needs a stack that controls processes")

    with pytest.raises(UnsupportedFault, match="controls processes"):
        _explore(tmp_path, refuses, seed=0)
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1


def test_two_broken_runs_in_a_row_stop_the_exploration(tmp_path):
    def broken(schedule: Schedule) -> RunResult:
        raise RuntimeError("broker vanished")

    with pytest.raises(Exception, match="2 runs in a row raised.*broker vanished"):
        _explore(tmp_path, broken, seed=0)


def test_bad_arguments_are_refused_before_any_run(tmp_path):
    for kw, message in (({"max_examples": 0}, "max_examples must be an int >= 1"),
                        ({"confirm": -1}, "confirm must be an int >= 0"),
                        ({"time_budget_s": 0}, "time_budget_s must be a number of seconds > 0"),
                        ({"checkers": "duplicates"}, "checkers must be a collection of checker names")):
        with pytest.raises(ConfigError, match=message):
            _explore(tmp_path, FakeRunner(), **kw)
    with pytest.raises(ConfigError, match="cannot import deployment module"):
        explore("no_such_module:prepare", None, out_dir=tmp_path)


def test_reproducer_round_trip_and_read_errors(tmp_path):
    repro = Reproducer(schedule=Schedule.of(), seed=1, variant={"acks_late": False}, n_per_kind=2,
                       failure={"lost_tasks": {"lost": 1}}, command="celery-chaos replay x.json",
                       target=Target("lost_tasks", ("lost",)), found_schedule=Schedule(), reproduced=(1, 2))
    path = repro.write(tmp_path / "r.json")
    assert Reproducer.read(path) == repro
    with pytest.raises(ConfigError, match="no reproducer at"):
        Reproducer.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="is not JSON"):
        Reproducer.read(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"schedule": {"faults": []}}')
    with pytest.raises(ConfigError, match=r"a reproducer needs \['seed', 'variant', 'n_per_kind', 'failure'\]"):
        Reproducer.read(tmp_path / "partial.json")


def test_replay_runs_the_reproducer_s_schedule_with_its_variant(tmp_path, monkeypatch):
    import harness.explore.reproducer as explore_mod

    seen: dict[str, Any] = {}

    @contextlib.contextmanager
    def fake_prepare(stack: Any, **variant: Any) -> Iterator[Deployment]:
        seen["variant"] = variant
        yield Deployment(app="x:app", workload=None, queues=("q",))

    def fake_run(stack: Any, d: Deployment, config: RunConfig, **kw: Any) -> RunResult:
        seen.update(schedule=config.schedule, n_per_kind=config.n_per_kind,
                    submit_interval_s=config.submit_interval_s)
        return _result(config.schedule, {"duplicates": (Validity.FALSE, ("duplicate_effect",))})

    monkeypatch.setattr(explore_mod, "run_deployment", fake_run)
    out = tmp_path / "x"
    result = _explore(out, FakeRunner(), seed=0, n_per_kind=2, submit_interval_s=0.3)
    assert result.found
    replayed = replay(out / "reproducer.json", object(), deployment_factory=fake_prepare)
    assert seen["variant"] == {"idempotent_effects": False}
    assert seen["schedule"] == result.reproducer.schedule
    assert seen["n_per_kind"] == 2 and seen["submit_interval_s"] == 0.3
    assert result.reproducer.fails_same_way(replayed)
    doc = json.loads((out / "reproducer.json").read_text())
    doc["deployment"] = None
    (out / "unnamed.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="names no deployment"):
        replay(out / "unnamed.json", object())


def test_cli_options_and_bad_input_exit_2_before_a_stack_starts(capsys):
    p = argparse.ArgumentParser()
    add_explore_arguments(p)
    args = p.parse_args(["--variant", "idempotent_effects=false", "--kinds", "kill_worker,reset_peer", "--seed", "4",
                         "--max-examples", "6", "--out", "o"])
    assert parse_variant(args.variant) == {"idempotent_effects": False}
    assert (args.kinds, args.seed, args.max_examples, args.out) == ("kill_worker,reset_peer", 4, 6, "o")
    bad = p.parse_args(["--kinds", "kill_worker,teleport"])
    assert explore_main(bad) == 2
    assert "'teleport' is not one of" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--variant takes NAME=VALUE"):
        parse_variant(["idempotent_effects"])
    r = argparse.ArgumentParser()
    add_replay_arguments(r)
    assert r.parse_args(["out/reproducer.json"]).reproducer == "out/reproducer.json"


def test_a_run_whose_fault_could_not_be_healed_is_not_judged(tmp_path):
    from dataclasses import replace as dc_replace

    from harness.faults.nemesis import AppliedFault

    def unhealed(schedule: Schedule) -> RunResult:
        r = _result(schedule, {"duplicates": (Validity.FALSE, ("duplicate_effect",))})
        stuck = AppliedFault("f1", "kill_worker", {}, "at 0 s", 1.0, "unhealed", error="worker did not start")
        return dc_replace(r, schedule_as_run=(stuck,))

    result = _explore(tmp_path, unhealed, seed=0, max_examples=4)
    assert not result.found and result.failing_runs == 0
    lines = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert lines and all("could not be healed: run not judged" in x["error"] for x in lines)
