"""Run a certification profile against an app and workload, with progress and a report.

Responsibility: deploy the system under test once per scenario (through the workload's
``prepare(stack)`` when it has one), run each scenario with `harness.run.run_deployment` (under a
steady load with `harness.certification.under_load`), turn each result into a `ScenarioReport`
(`scenario_report`, the one place that does), collect them into a `CertificationReport`,
and decide the exit code: 0 only when every scenario that ran is valid.

Example::

    report = certify(stack, system, select("quick"), app="sample_system:app")
    report.valid        # 'true' when every scenario that ran is valid
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.certification.catalogue import Scenario
from harness.checkers.claim import Claim
from harness.checkers.coverage import task_coverage
from harness.checkers.index import build_index
from harness.errors import ConfigError
from harness.faults.schedule import Schedule
from harness.report import (
    CertificationReport,
    ScenarioReport,
    build_timeline,
    fault_windows,
    scenario_validity,
)
from harness.report.audit import audit_statuses
from harness.report.model import allowed_words
from harness.stack.base import Stack, capabilities
from harness.stack.result_backend import BackendPlan, plan_for_app
from harness.workload import Deployment, load_object, load_workload  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from harness.run import RunResult

Log = Callable[[str], None]


@contextlib.contextmanager
def deploy(stack: Stack, system: Any, app: str, concurrency: int = 2) -> Iterator[Deployment]:
    """Deploy `system` on `stack` for one scenario (its own `prepare`, or as given)."""
    if hasattr(system, "prepare"):
        with system.prepare(stack, concurrency=concurrency) as d:
            yield d
    elif not app:
        raise ConfigError("--app is needed: the workload has no prepare() that names the app to run "
                          "(pass --app MODULE:ATTR of your Celery app)")
    else:
        yield Deployment(app=app, workload=system, concurrency=concurrency)


def missing_capabilities(scenario: Scenario, stack: Stack, backend: BackendPlan | None = None) -> list[str]:
    """Why `scenario` cannot run on `stack` for an app whose result backend is planned as `backend`."""
    out = []
    if "stack_backend" in scenario.needs and backend is not None and not backend.faults_apply:
        out.append(f"its faults act on the stack's result backend, and the app keeps its own "
                   f"({backend.app_backend}://)")
    if "process_control" in scenario.needs and "process_control" not in capabilities(stack):
        out.append("it kills or restarts servers, and this stack provider cannot control them")
    if "rabbitmq" in scenario.needs and stack.urls.broker_kind != "amqp":
        out.append("it needs RabbitMQ (rabbitmqctl), and the broker is Redis")
    if "cluster" in scenario.needs and "cluster" not in capabilities(stack):
        out.append("it needs a RabbitMQ cluster: run it with --topology cluster (the local stack)")
    if "partner_api" in scenario.needs and "partner_api" not in stack.extra_proxies:
        out.append("the system under test routes no dependency through a proxy named partner_api")
    return out


def check_app_matches(requested: str | None, deployed: str) -> None:
    """Refuse a run whose workload deploys another app than the one the user named.

    >>> check_app_matches("shop.celery:app", "shop.celery:app")
    >>> check_app_matches(None, "anything:app")
    """
    if requested and requested != deployed:
        raise ConfigError(f"--app {requested} was given, but the workload's prepare() deploys {deployed}: "
                          f"drop --app, or pass --app {deployed} (a report must never name an app that did not run)")


def run_scenario(stack: Stack, system: Any, scenario: Scenario, *, app: str, replay: str = "",
                 log: Log | None = None, claim: Claim | None = None, app_given: bool = False,
                 keep_history: bool = False, load_rate: float | None = None) -> ScenarioReport:
    """Run one scenario on `stack` and return its report entry (errors become `unknown`).

    `claim` is the guarantee judged (default: the workload's, else the default claim);
    `app_given`: the user named `app`, so a workload deploying another one is refused;
    `load_rate`: run it while Locust holds that many units per second
    (`harness.certification.under_load`).
    """
    from harness.certification.under_load import plan_under_load
    from harness.run import RunConfig, _load_app, run_deployment

    load = plan_under_load(scenario, load_rate) if load_rate else None
    schedule = load.schedule if load else scenario.schedule
    description = load.description if load else scenario.description
    t0 = time.monotonic()
    try:
        with deploy(stack, system, app) as d:
            check_app_matches(app if app_given else None, d.app)
            deployed = d.app
            backend = plan_for_app(_load_app(d.producer), d.settings, stack.urls.backend_url)
            missing = missing_capabilities(scenario, stack, backend)
            if missing:
                return ScenarioReport(scenario.name, "skipped", {}, schedule.to_dict()["faults"], 0.0,
                                      description=scenario.description, error="not applicable: " + "; ".join(missing))
            metrics: dict[str, float] = {}
            if load:
                result, metrics = load.run(stack, d, scenario, log=log, claim=claim)
            else:
                config = RunConfig(schedule=schedule, n_per_kind=scenario.n_per_kind,
                                   submit_interval_s=scenario.submit_interval_s, workers=scenario.workers,
                                   name=scenario.name, claim=claim,
                                   rate_limits="app" if "rate_limits" in scenario.needs else None)
                result = run_deployment(stack, d, config, log=log)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken scenario is unknown, never a pass
        return ScenarioReport(scenario.name, "unknown", {}, schedule.to_dict()["faults"],
                              time.monotonic() - t0, description=scenario.description, replay=replay,
                              error=f"{type(exc).__name__}: {exc}")
    if "rate_limits" in scenario.needs and not result.expectations.rate_limits:
        return ScenarioReport(scenario.name, "skipped", {}, schedule.to_dict()["faults"],
                              time.monotonic() - t0, description=scenario.description, app=deployed,
                              error="not applicable: no task of the app declares a rate_limit "
                                    "(read from the workers: inspect registered rate_limit)")
    return scenario_report(scenario.name, result, schedule=schedule, elapsed_s=time.monotonic() - t0,
                           description=description, replay=replay, app=deployed, keep_history=keep_history,
                           bucket_s=load.bucket_s if load else 0.5, metrics=metrics)


def scenario_report(name: str, result: RunResult, *, schedule: Schedule, elapsed_s: float, description: str = "",
                    replay: str = "", app: str = "", keep_history: bool = False, bucket_s: float = 0.5,
                    metrics: Mapping[str, float] | None = None) -> ScenarioReport:
    """The report entry of a scenario's run: its verdicts' metrics and timings (plus `metrics`,
    what a load measured), the schedule as it ran (else `schedule`, as planned), a timeline in
    `bucket_s` buckets, the task coverage, and the notes as its error when it is not valid.

    The history and expectations are kept when asked, and always for a scenario that is not
    valid or whose claim allowed an anomaly (the evidence to read); the others' are dropped.
    """
    history = list(result.history or ())
    merged: dict[str, float] = {}
    for v in result.verdicts.values():
        merged.update({k: float(x) for k, x in v.metrics.items()})
    merged.update({f"timing_{k}": float(x) for k, x in result.timings.items()})
    merged.update(metrics or {})
    notes = list(result.notes)
    if not result.quiesced:
        notes.insert(0, "the system did not quiesce before the deadline")
    valid = scenario_validity(result.valid)
    exp = result.expectations
    rep = ScenarioReport(
        name=name, valid=valid, verdicts=result.verdicts,
        schedule=[a.to_dict() for a in result.schedule_as_run] or schedule.to_dict()["faults"],
        elapsed_s=elapsed_s, timeline=build_timeline(history, bucket_s=bucket_s),
        fault_windows=fault_windows(history), metrics=merged, description=description,
        replay=replay, error="; ".join(notes) if notes and valid != "true" else None,
        task_coverage=task_coverage(build_index(history, run_id=exp.run_id, kill_fault_kinds=exp.kill_fault_kinds)),
        history=tuple(history), expectations={"expectations": exp.to_dict(), "checkers": sorted(result.verdicts)},
        keep_history=keep_history, app=app)
    if not (keep_history or rep.history_file):
        rep = dataclasses.replace(rep, history=())
    return rep


def inspect_deployment(stack: Stack, system: Any, app: str, say: Log) -> tuple[list[Any] | None, dict[str, str]]:
    """Deploy once more after the scenarios: the static audit of the app as deployed (the producer
    app, configured like the workers) and what the stack provides in place of what the app's
    configuration names (role -> sentence). The audit is None, with a line saying why, when the
    deployed app cannot be loaded here."""
    from harness.audit import audit_app, format_risks
    from harness.run import _load_app

    try:
        with deploy(stack, system, app) as d:
            say(f"deployed as: {d.description}")
            producer = _load_app(d.producer)
            risks = audit_app(producer)
            plan = plan_for_app(producer, d.settings, stack.urls.backend_url)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the audit explains; it never stops a certification
        say(f"static audit skipped: {type(exc).__name__}: {exc}")
        return None, {}
    subs = {"result backend": plan.note} if plan.note else {}
    for role, text in subs.items():
        say(f"{role}: {text}")
    say(f"static audit: {len(risks)} risk(s) in the configuration; each is confirmed or refuted by the runs")
    for line in format_risks(risks).splitlines():
        if line.startswith("["):
            say(f"  {line}")
    return risks, subs


def load_words(metrics: dict[str, float]) -> str:
    """One terminal line on a scenario run under load.

    >>> load_words({"load_units": 130, "load_throughput_before_per_s": 38.5, "load_backlog_drain_s": 2.0,
    ...             "load_p99_during_ms[f1:kill_worker_child]": 900.0, "load_time_to_recover_s[f1:kill_worker_child]": 1.5})
    '130 units; 38.5 executions/s before; f1:kill_worker_child: p99 during 900 ms, recovered in 1.5 s; backlog drained in 2.0 s'
    """
    parts = [f"{metrics.get('load_units', 0):.0f} units"]
    before = metrics.get("load_throughput_before_per_s")
    if before is not None:
        parts.append(f"{before:.3g} executions/s before")
    faults: dict[str, list[str]] = {}
    for key, value in metrics.items():
        for field, text in (("p99_during_ms", "p99 during {:.0f} ms"), ("p99_after_ms", "p99 after {:.0f} ms"),
                            ("time_to_recover_s", "recovered in {:.3g} s")):
            prefix = f"load_{field}["
            if key.startswith(prefix):
                faults.setdefault(key[len(prefix):-1], []).append(text.format(value))
    parts += [f"{fault}: {', '.join(words)}" for fault, words in faults.items()]
    parts.append(f"backlog drained in {metrics.get('load_backlog_drain_s', 0):.1f} s")
    return "; ".join(parts)


def scenario_label(rep: ScenarioReport) -> str:
    """The terminal word for a scenario: a pass a weaker claim allowed is never a plain "valid".

    >>> scenario_label(ScenarioReport("s", "false", {}, [], 1.0))
    'INVALID'
    """
    if rep.valid == "true" and rep.allowed:
        return f"ALLOWED BY YOUR CLAIM: {allowed_words(rep.allowed)}"
    return {"true": "valid", "false": "INVALID", "unknown": "UNKNOWN", "skipped": "skipped"}[rep.valid]


def certify(stack: Stack, system: Any, scenarios: Sequence[Scenario], *, app: str, workload: str = "",
            profile: str = "quick", progress: Log | None = None,
            claim: Claim | None = None, app_given: bool = False, keep_histories: bool = False,
            load_rate: float | None = None) -> CertificationReport:
    """Run `scenarios` one after another on one stack; `progress` gets a line per step.

    `load_rate`: run each scenario under a steady Locust load of that many units per second
    (`harness.certification.under_load`); the rate-limit burst runs as it is (it is its own load).
    """
    say = progress or (lambda _m: None)
    claim = claim if claim is not None else Claim.from_any(getattr(system, "claim", None))
    say(f"claim: {claim}")
    if load_rate:
        say(f"load: Locust holds {load_rate:g} units/s of the workload through each scenario")
    # The audit loads the app's task registry: done after the runs, so it never finalizes an app
    # before its own set-up (Django's autodiscovery) has registered the tasks.
    risks: list[Any] | None = None
    subs: dict[str, str] = {}
    t0 = time.monotonic()
    reports: list[ScenarioReport] = []

    def report() -> CertificationReport:
        return CertificationReport(
            audit=audit_statuses(risks, reports) if risks is not None else None,
            substitutions=subs,
            profile=profile + (f" under load ({load_rate:g} units/s)" if load_rate else ""), scenarios=list(reports),
            app=app or next((r.app for r in reports if r.app), ""), workload=workload, claim=claim.to_dict(),
            elapsed_s=time.monotonic() - t0,
            environment={"python": platform.python_version(), "platform": platform.platform(),
                         "provider": stack.provider, "broker": stack.urls.broker_kind})

    try:
        for i, sc in enumerate(scenarios, 1):
            say(f"[{i}/{len(scenarios)}] {sc.name}: {sc.description} (elapsed {time.monotonic() - t0:.0f} s)")
            replay = ("celery-chaos certify" + (f" --app {app}" if app_given else "")
                      + f" --workload {workload} --profile {profile} --only {sc.name}"
                      + ("" if claim.is_default else f" --claim delivery={claim.delivery},effects={claim.effects}")
                      + (f" --load {load_rate:g}" if load_rate else ""))
            # The rate-limit burst runs as it is: it is its own load.
            rep = run_scenario(stack, system, sc, app=app, replay=replay, claim=claim, app_given=app_given,
                               keep_history=keep_histories,
                               load_rate=load_rate if "rate_limits" not in sc.needs else None)
            label = scenario_label(rep)
            say(f"[{i}/{len(scenarios)}] {sc.name}: {label} in {rep.elapsed_s:.1f} s"
                + (f" ({rep.error})" if rep.error and rep.valid != "true" else ""))
            if "load_rate_per_s" in rep.metrics:
                say(f"[{i}/{len(scenarios)}] {sc.name} under load: " + load_words(rep.metrics))
            reports.append(rep)
        risks, subs = inspect_deployment(stack, system, app, say)
    except KeyboardInterrupt as exc:
        # The caller writes the finished scenarios as a partial report once the stack is down.
        exc.partial_report = report()  # type: ignore[attr-defined]
        raise
    return report()


def progress_to_stderr(line: str) -> None:
    print(f"[certify] {line}", file=sys.stderr, flush=True)
