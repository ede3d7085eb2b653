"""Reports: report.json, a self-contained report.html with timeline charts, and junit.xml.

Example:
    >>> from harness.report import write_report, CertificationReport
    >>> write_report(CertificationReport(profile="quick", scenarios=[]), "out/")   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from harness.report.audit import audit_statuses, scenario_observation
from harness.report.html import to_html
from harness.report.junit import to_junit_xml
from harness.report.model import (
    AuditEntry,
    CertificationReport,
    FaultWindow,
    ScenarioReport,
    ScenarioValidity,
    TimelinePoint,
    scenario_validity,
)
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
                write_text_atomically(exp_path, json.dumps(sc.expectations, indent=1, default=str))
                paths[f"expectations:{sc.name}"] = exp_path
    write_text_atomically(paths["json"], json.dumps(report.to_dict(), indent=2, default=str))
    write_text_atomically(paths["html"], to_html(report))
    write_text_atomically(paths["junit"], to_junit_xml(report))
    return paths


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file and os.replace: a reader never sees half a file.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"; write_text_atomically(p, "{}"); p.read_text()
    '{}'
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["AuditEntry", "CertificationReport", "FaultWindow", "ScenarioReport", "ScenarioValidity", "TimelinePoint",
           "audit_statuses", "build_timeline", "fault_windows", "scenario_observation", "scenario_validity", "to_html",
           "to_junit_xml", "write_report", "write_text_atomically"]
