"""Reports: report.json, a self-contained report.html with timeline charts, and junit.xml.

Example:
    >>> from harness.report import write_report, CertificationReport
    >>> write_report(CertificationReport(profile="quick", scenarios=[]), "out/")   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.audit import audit_statuses, scenario_observation
from harness.report.html import to_html
from harness.report.junit import to_junit_xml
from harness.report.model import AuditEntry, CertificationReport, FaultWindow, ScenarioReport, TimelinePoint
from harness.report.timeline import build_timeline, fault_windows


def write_report(report: CertificationReport, directory: str | Path) -> dict[str, Path]:
    """Write report.json, report.html and junit.xml into `directory`; return their paths.

    Each scenario that is not valid also gets its merged history, ``histories/<name>.jsonl``
    (re-check it with ``celery-chaos check``).
    """
    from harness.history.merge import write_history

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "report.json", "html": d / "report.html", "junit": d / "junit.xml"}
    for sc in report.scenarios:
        if sc.history_file:
            paths[f"history:{sc.name}"] = write_history(sc.history, d / sc.history_file)
            if sc.expectations:
                # Beside the history, so `celery-chaos check` derives the same verdict.
                exp_path = d / sc.history_file.replace(".jsonl", ".expectations.json")
                exp_path.write_text(json.dumps(sc.expectations, indent=1, default=str))
                paths[f"expectations:{sc.name}"] = exp_path
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2, default=str))
    paths["html"].write_text(to_html(report))
    paths["junit"].write_text(to_junit_xml(report))
    return paths


__all__ = ["AuditEntry", "CertificationReport", "FaultWindow", "ScenarioReport", "TimelinePoint", "audit_statuses",
           "build_timeline", "fault_windows", "scenario_observation", "to_html", "to_junit_xml", "write_report"]
