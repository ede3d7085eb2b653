"""Security scans: scan N assets in parallel (group), then one report (chord callback).

The callback must run exactly once with every header result: it checks it got one result per
asset, writes the report row under the unit key, and pages the on-call through the
high-priority queue when a finding is critical. Findings are a pure function of the asset name
so a workload can predict every effect.

Example:
    >>> findings_for("r1:scan:0/asset-0") == findings_for("r1:scan:0/asset-0")
    True
    >>> assets_for("k", 2)
    ['k/asset-0', 'k/asset-1']
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from celery import Celery, chord, group
from celery.canvas import Signature

from sample_system.service_task import ServiceTask

SEVERITIES = ("low", "medium", "high", "critical")
_IDS = uuid.UUID("5e1f1c6e-8f7a-4d0c-9a51-3c2b1e0d9f00")


class ChordIncomplete(RuntimeError):
    """The report callback did not receive one result per asset (fatal)."""


def assets_for(key: str, n: int) -> list[str]:
    return [f"{key}/asset-{i}" for i in range(n)]


def findings_for(asset: str) -> list[str]:
    """Severities found on `asset`: 0-2 findings, deterministic."""
    h = hashlib.sha256(asset.encode()).digest()
    return [SEVERITIES[h[1 + i] % len(SEVERITIES)] for i in range(h[0] % 3)]


def pages_oncall(assets: list[str]) -> bool:
    """Whether a scan of `assets` pages the on-call (some finding is critical)."""
    return any("critical" in findings_for(a) for a in assets)


def scan_workflow(app: Celery, key: str, assets: list[str], *, headers: dict[str, str] | None = None,
                  report_task_id: str | None = None) -> Signature:
    """``chord(group(scan_asset per asset), aggregate_report)``; `report_task_id` names the callback."""
    opts = {"headers": dict(headers or {})}
    body = app.signature("scans.aggregate_report", kwargs={"key": key, "expected_assets": len(assets)},
                         options=dict(opts))
    if report_task_id:
        body = body.set(task_id=report_task_id)
    header = group(app.signature("scans.scan_asset", args=(a,), kwargs={"key": key}, options=dict(opts))
                   for a in assets)
    return chord(header, body)


def register(app: Celery) -> None:
    @app.task(base=ServiceTask, bind=True, shared=False, name="scans.scan_asset")
    def scan_asset(self: ServiceTask, asset: str, *, key: str) -> dict[str, Any]:
        findings = findings_for(asset)
        self.apply_effects(self.effect(key, "scan.asset", f"scan.asset:{asset}", asset=asset, findings=findings))
        return {"asset": asset, "findings": findings}

    @app.task(base=ServiceTask, bind=True, shared=False, name="scans.aggregate_report")
    def aggregate_report(self: ServiceTask, results: list[dict[str, Any]], *, key: str,
                         expected_assets: int) -> dict[str, Any]:
        assets = sorted(r["asset"] for r in results)
        if len(results) != expected_assets or len(set(assets)) != expected_assets:
            raise ChordIncomplete(f"report for {key!r} got {len(results)} results for {len(set(assets))} "
                                  f"distinct assets, expected {expected_assets}")
        findings = [f for r in results for f in r["findings"]]
        critical = findings.count("critical")
        report = {"assets": len(assets), "findings": len(findings), "critical": critical}
        self.apply_effects(self.effect(key, "scan.report", assets=len(assets), findings=len(findings),
                                       critical=critical))
        if critical:
            self.app.send_task("notifications.page_oncall", kwargs={"report": report, "key": key},
                               task_id=str(uuid.uuid5(_IDS, f"page:{key}")), headers=self.unit_headers(key))
        return report
