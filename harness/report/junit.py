"""JUnit XML: one testcase per scenario, failed when its verdict is false or unknown.

Example:
    >>> from harness.report.model import CertificationReport
    >>> to_junit_xml(CertificationReport(profile="quick", scenarios=[])).startswith("<?xml")
    True
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.report.model import CertificationReport


def to_junit_xml(report: CertificationReport) -> str:
    suite = ET.Element("testsuite", name=f"celery-chaos-{report.profile}", tests=str(len(report.scenarios)),
                       failures=str(sum(1 for s in report.scenarios if s.valid in ("false", "unknown"))),
                       skipped=str(sum(1 for s in report.scenarios if s.valid == "skipped")),
                       errors="0", time=f"{report.elapsed_s:.3f}")
    for s in report.scenarios:
        case = ET.SubElement(suite, "testcase", classname=f"certification.{report.profile}", name=s.name,
                             time=f"{s.elapsed_s:.3f}")
        if s.valid == "skipped":
            ET.SubElement(case, "skipped", message=s.error or "not applicable")
        elif s.valid != "true":
            bad = {k: v for k, v in s.verdicts.items() if v.valid.value != "true"}
            lines = [f"{k}: {v.valid.value} counts={dict(v.counts)} notes={list(v.notes)[:3]}" for k, v in bad.items()]
            if s.error:
                lines.insert(0, s.error)
            msg = "verdict unknown (the fault never bit or nothing was checked)" if s.valid == "unknown" \
                else "verdict false: an anomaly was found"
            fail = ET.SubElement(case, "failure", message=msg, type=f"verdict_{s.valid}")
            fail.text = "\n".join(lines) + (f"\nreplay: {s.replay}" if s.replay else "")
        out = ET.SubElement(case, "system-out")
        out.text = "schedule: " + ", ".join(str(f.get("kind", f)) for f in s.schedule)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")
