"""`celery-chaos certify` end to end on the two example apps, each in both configurations.

What a green certificate must mean: this system does not lose or double work under these
faults. So, with the default claim (at-least-once delivery, exactly-once effects):

- on Celery's defaults (early acks) a SIGKILLed worker loses the task it was running: exit 1,
  and a counterexample naming the lost task and its cause (``task_acks_late``);
- hardened (late acks, reject on worker lost, idempotent writes): exit 0, every scenario valid.

Each case runs the real command as a user would (from the app's directory, PYTHONPATH=.), on
its own embedded stack: about 10 s of stack plus the scenarios. Marked ``full``: ``make test``
leaves these out, ``make full`` runs them. The no-fault smoke test of the apps is
``test_apps_smoke.py`` (in ``make test``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.full, pytest.mark.timeout(900)]

APPS_DIR = Path(__file__).resolve().parent
SCENARIOS = ("baseline", "worker_child_sigkill", "whole_worker_sigkill")
#: name -> (directory, --app, --workload, the app's hardening variable, the app's task names)
APPS: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "shop_django": ("shop_django", "shop.celery:app", "chaos_workload:ShopWorkload", "SHOP_HARDENED",
                    ("orders.tasks.charge_order", "orders.tasks.send_receipt", "orders.tasks.reserve_item",
                     "orders.tasks.finalize_order")),
    "ledger_sqla": ("ledger_sqla", "ledger:app", "chaos_workload:LedgerWorkload", "LEDGER_HARDENED",
                    ("ledger.post_transfer", "ledger.send_statement", "ledger.settle_payout")),
}


def _command() -> list[str]:
    script = Path(sys.executable).with_name("celery-chaos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def certify(app_name: str, hardened: bool, report_dir: Path, timeout_s: float = 600.0,
            extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any], str]:
    """Run the certification of `app_name` as a subprocess; (exit code, report.json, stderr)."""
    directory, app, workload, flag, _tasks = APPS[app_name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [".", os.environ.get("PYTHONPATH")])),
           flag: "1" if hardened else "0"}
    argv = [*_command(), "certify", "--app", app, "--workload", workload, "--only", *SCENARIOS,
            "--report", str(report_dir), *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=APPS_DIR / directory, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the command tears its stack and workers down on it.
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
        pytest.fail(f"celery-chaos certify of {app_name} did not finish within {timeout_s:.0f} s:\n{err[-3000:]}")
    elapsed = time.monotonic() - t0
    report_path = report_dir / "report.json"
    assert report_path.exists(), f"exit {proc.returncode}, no report.json:\n{err[-3000:]}"
    report = json.loads(report_path.read_text())
    print(f"{app_name} hardened={hardened}: exit {proc.returncode} in {elapsed:.0f} s\n{summarize(report)}")
    return proc.returncode, report, err


def summarize(report: dict[str, Any]) -> str:
    """One line per scenario and per verdict that is not valid (for failure messages)."""
    lines = [f"report valid={report.get('valid')} summary={report.get('summary')}"]
    for sc in report.get("scenarios", []):
        faults = ", ".join(f"{f.get('kind')}:{f.get('outcome')}" for f in sc.get("schedule", []))
        lines.append(f"  {sc['name']}: {sc['valid']} ({faults or 'no fault'})"
                     + (f" error={sc['error']}" if sc.get("error") else ""))
        for name, v in sc.get("verdicts", {}).items():
            counts = v.get("counts") or {}
            allowed = {k: n for k, n in counts.items() if k.endswith("_allowed") and n}
            if v.get("valid") not in (True, "true"):
                lines.append(f"    {name}: {v.get('valid')} {json.dumps(counts)[:300]}")
            elif allowed:
                # A valid verdict that allowed anomalies: show them, it is what a weak claim let pass.
                lines.append(f"    {name}: {v.get('valid')} but allowed {allowed}")
    return "\n".join(lines)


def counterexamples(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for v in scenario.get("verdicts", {}).values():
        out.extend(c for c in v.get("counterexamples", []) or [] if isinstance(c, dict))
    return out


def scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in report.get("scenarios", []) if s.get("name") == name]
    assert found, f"scenario {name} is not in the report: {[s.get('name') for s in report.get('scenarios', [])]}"
    return found[0]


@pytest.mark.parametrize("app_name", sorted(APPS))
def test_defaults_lose_work_and_the_certificate_says_so(app_name: str, tmp_path: Path) -> None:
    rc, report, err = certify(app_name, False, tmp_path / "report")
    summary = summarize(report)
    assert rc == 1, f"early acks lose the task a killed worker was running: expected exit 1, got {rc}\n{summary}"
    assert report["valid"] == "false", f"a lost task is a violation (false), not {report['valid']}\n{summary}"
    killed = scenario(report, "whole_worker_sigkill")
    assert any(f.get("outcome") == "healed" for f in killed.get("schedule", [])), f"the kill did not happen\n{summary}"
    tasks = APPS[app_name][4]
    lost = [c for c in counterexamples(killed)
            if "lost" in str(c.get("kind")) and not c.get("allowed") and c.get("task_id") and c.get("name") in tasks]
    assert lost, ("whole_worker_sigkill must name a lost task of the app (a counterexample of kind lost, "
                  f"not allowed, with its task id and name)\n{summary}\n"
                  + json.dumps(counterexamples(killed)[:3], indent=1)[:3000])
    assert any("acks_late" in json.dumps(c) for c in lost), (
        "the lost task's counterexample names the cause, task_acks_late=False, and the fix\n"
        + json.dumps(lost[:2], indent=1)[:3000])


@pytest.mark.parametrize("app_name", sorted(APPS))
def test_hardened_app_is_certified(app_name: str, tmp_path: Path) -> None:
    rc, report, err = certify(app_name, True, tmp_path / "report")
    summary = summarize(report)
    assert rc == 0, f"late acks + reject_on_worker_lost + idempotent writes: expected exit 0, got {rc}\n{summary}"
    assert [s["valid"] for s in report["scenarios"]] == ["true"] * len(SCENARIOS), summary
