"""The audit section of the certification report: statuses from ScenarioReports, JSON and HTML."""

from __future__ import annotations

import json
from pathlib import Path

from harness.audit import CONFIRMED, NOT_EXERCISED, REFUTED, audit_conf
from harness.checkers.verdict import Validity, Verdict
from harness.report import (
    AuditEntry,
    CertificationReport,
    ScenarioReport,
    audit_statuses,
    scenario_observation,
    to_html,
    write_report,
)


def _applied(kind: str, **fault: str) -> dict[str, object]:
    return {"id": "f1", "kind": kind, "fault": {"kind": kind, **fault}, "outcome": "healed"}


def _lost(n: int, allowed: bool) -> Verdict:
    cex = tuple({"kind": "lost", "allowed": allowed, "task_id": f"t{i}"} for i in range(min(n, 2)))
    return Verdict("lost_tasks", Validity.TRUE if allowed else Validity.FALSE,
                   counts={"lost_allowed" if allowed else "lost": n}, counterexamples=cex)


def _dup(cause: str, concurrent: bool) -> Verdict:
    return Verdict("duplicates", Validity.TRUE, counts={"duplicate_execution_allowed": 1},
                   counterexamples=({"kind": "duplicate_execution", "allowed": True, "cause": cause,
                                     "concurrent": concurrent},))


CLEAN = Verdict("lost_tasks", Validity.TRUE, counts={"lost": 0})


def test_observation_counts_exactly_and_narrows_duplicates():
    sc = ScenarioReport("s", "false", {"lost_tasks": _lost(5, allowed=True), "duplicates": _dup("redelivery", True)},
                        [_applied("reset_peer", role="worker_broker"),
                         {"id": "f2", "kind": "kill_worker", "fault": {"kind": "kill_worker"}, "outcome": "never_bit"}],
                        2.0)
    observed, exercised = scenario_observation(sc)
    assert observed["lost"] == 5  # counts, not the 2 listed counterexamples
    assert observed["duplicate_execution"] == 1
    assert observed["duplicate_execution/redelivery"] == 1 and observed["duplicate_execution/concurrent"] == 1
    assert set(exercised) == {"reset_peer", "reset_peer:worker_broker"}  # the kill never bit


def test_a_fault_shorter_than_the_risk_needs_decides_nothing():
    # The sample system's backend retry budget (mode 17): at most 8.5 s of retries.
    conf = {"broker_url": "amqp://h//", "result_backend": "redis://h/0", "result_backend_always_retry": True,
            "result_backend_max_retries": 10, "result_backend_max_sleep_between_retries_ms": 2000}
    risks = [r for r in audit_conf(conf) if r.id == "backend_retry_budget"]
    assert risks and risks[0].min_fault_s == 8.54

    def outage(seconds: float, verdict: Verdict) -> ScenarioReport:
        applied = {**_applied("backend_outage", mode="proxy_down"), "started_s": 0.3, "healed_s": 0.3 + seconds}
        return ScenarioReport(f"backend_outage_{seconds:g}s", "true", {"dlq": verdict}, [applied], seconds)

    clean = Verdict("dlq", Validity.TRUE, counts={"completed_and_dlq": 0})
    bad = Verdict("dlq", Validity.FALSE, counts={"completed_and_dlq": 1},
                  counterexamples=({"kind": "completed_and_dlq", "allowed": False, "task_id": "t"},))
    assert audit_statuses(risks, [outage(2.0, clean)])[0].status == NOT_EXERCISED
    assert audit_statuses(risks, [outage(12.0, clean)])[0].status == REFUTED
    assert audit_statuses(risks, [outage(2.0, clean), outage(12.0, bad)])[0].status == CONFIRMED


def test_statuses_over_a_certification_of_an_early_ack_app():
    risks = audit_conf({"broker_url": "amqp://h//"})
    scenarios = [
        ScenarioReport("baseline", "true", {"lost_tasks": CLEAN}, [], 1.0),
        # the kill lost tasks: early acks confirmed there
        ScenarioReport("worker_child_sigkill", "true", {"lost_tasks": _lost(2, allowed=True)},
                       [_applied("kill_worker_child")], 2.0),
        # the blackhole lost nothing: no-confirms refuted there
        ScenarioReport("broker_blackhole", "true", {"lost_tasks": CLEAN},
                       [_applied("broker_outage", mode="blackhole")], 2.0),
        # skipped and broken scenarios decide nothing
        ScenarioReport("warm_shutdown_under_load", "skipped", {}, [_applied("warm_shutdown")], 0.0),
        ScenarioReport("broker_kill_restart", "unknown", {}, [_applied("broker_outage", mode="kill_restart")], 0.1,
                       error="RuntimeError: boom"),
    ]
    got = {e.risk.id: (e.status, e.scenarios) for e in audit_statuses(risks, scenarios)}
    assert got["early_acks"] == (CONFIRMED, ("worker_child_sigkill",))
    assert got["no_publisher_confirms"] == (REFUTED, ("broker_blackhole",))
    assert got["prefetch_multiplier"] == (NOT_EXERCISED, ())
    assert got["no_time_limit"] == (NOT_EXERCISED, ())


def test_confirmed_beats_refuted_across_scenarios():
    risks = [r for r in audit_conf({"broker_url": "amqp://h//"}) if r.id == "early_acks"]
    scenarios = [ScenarioReport("a", "true", {"lost_tasks": CLEAN}, [_applied("kill_worker")], 1.0),
                 ScenarioReport("b", "false", {"lost_tasks": _lost(1, allowed=False)}, [_applied("kill_worker")], 1.0)]
    (entry,) = audit_statuses(risks, scenarios)
    assert (entry.status, entry.scenarios) == (CONFIRMED, ("b",))


def test_report_json_and_html_carry_the_audit(tmp_path: Path):
    risks = audit_conf({"broker_url": "amqp://h//"})
    entries = [AuditEntry(risks[0], CONFIRMED, ("worker_child_sigkill",)), AuditEntry(risks[1], REFUTED, ("x",)),
               AuditEntry(risks[2], NOT_EXERCISED)]
    report = CertificationReport(profile="quick", scenarios=[], app="demo:app", audit=entries)
    paths = write_report(report, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert [e["status"] for e in doc["audit"]] == [CONFIRMED, REFUTED, NOT_EXERCISED]
    assert [AuditEntry.from_dict(e) for e in doc["audit"]] == entries
    page = paths["html"].read_text()
    assert '<h2 id="audit">Static audit</h2>' in page
    assert 'background:#cf222e">confirmed' in page          # red
    assert 'background:#1a7f37">refuted' in page            # green
    assert 'background:#8c959f">not exercised' in page      # grey
    assert "task_acks_late=False" in page


def test_a_report_without_audit_is_unchanged():
    report = CertificationReport(profile="quick", scenarios=[])
    assert "audit" not in report.to_dict()
    assert "Static audit" not in to_html(report)
    empty = CertificationReport(profile="quick", scenarios=[], audit=[])
    assert empty.to_dict()["audit"] == [] and "found no risk" in to_html(empty)
