"""Certification: the catalogue of scenarios per profile, and the runner behind `celery-chaos certify`.

Example::

    celery-chaos certify --app sample_system:app --workload sample_system.workload:SampleWorkload \\
        --profile quick --report chaos-report
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.certification.catalogue import CATALOGUE, PROFILES, Scenario, get, select
from harness.certification.runner import (
    certify,
    load_workload,
    progress_to_stderr,
    run_scenario,
)
from harness.report.model import allowed_words

__all__ = ["CATALOGUE", "PROFILES", "Scenario", "certify", "get", "load_workload", "run_certification",
           "run_scenario", "select"]


def run_certification(args: argparse.Namespace, stack_options: Mapping[str, Any]) -> int:
    """`celery-chaos certify`: 0 when every scenario that ran is valid, 1 otherwise, 2 on setup errors.

    `stack_options` are the options for `open_stack` the command line gave (the CLI reads them).
    """
    from harness.certification.under_load import DEFAULT_RATE_PER_S
    from harness.checkers.claim import Claim
    from harness.report import write_report
    from harness.stack import open_stack

    load_rate = getattr(args, "load", None)
    if args.profile == "load" and not load_rate:
        load_rate = DEFAULT_RATE_PER_S
    scenarios = select(args.profile, list(args.only) if getattr(args, "only", None) else None)
    system = load_workload(args.workload)
    claim = Claim.parse(args.claim) if getattr(args, "claim", None) else None
    progress_to_stderr(f"profile {args.profile}: {len(scenarios)} scenario(s) on the {args.stack} stack"
                       + (f" under a load of {load_rate:g} units/s" if load_rate else "") + "; "
                       f"app {args.app or '(the workload deploys it)'}, workload {args.workload}")
    t0 = time.monotonic()
    stack = open_stack(args.stack, **stack_options)
    with stack:
        progress_to_stderr(f"stack ready in {time.monotonic() - t0:.1f} s")
        report = certify(stack, system, scenarios, app=args.app or "", workload=args.workload, profile=args.profile,
                         progress=progress_to_stderr, claim=claim, app_given=bool(args.app),
                         keep_histories=bool(getattr(args, "keep_histories", False)), load_rate=load_rate)
    paths = write_report(report, Path(args.report))
    s = report.to_dict()["summary"]
    verdict = report.valid.upper() if report.valid != "true" else "VALID"
    if report.valid == "true" and report.allowed:
        verdict = f"ALLOWED BY YOUR CLAIM ({allowed_words(report.allowed)})"
    progress_to_stderr(f"certification {verdict} under the claim {Claim.from_any(report.claim)}: "
                       f"{s['true']} valid, {s['unknown']} unknown, {s['false']} invalid, {s['skipped']} skipped "
                       f"in {time.monotonic() - t0:.0f} s")
    cov = report.coverage
    uncut = [name for name, row in cov.items() if not row["cut"]]
    progress_to_stderr(f"fault coverage: {len(cov) - len(uncut)} of {len(cov)} task names cut mid-run by a kill"
                       + (f"; never cut: {', '.join(uncut)}" if uncut else ""))
    progress_to_stderr(f"report: {paths['html']} (also report.json, junit.xml)")
    if report.valid != "true":
        for sc in report.scenarios:
            if sc.valid in ("false", "unknown"):
                evidence = f"; history: {Path(args.report) / sc.history_file}" if sc.history_file else ""
                print(f"  {sc.name}: {sc.valid}; replay: {sc.replay}{evidence}", file=sys.stderr)
    return 0 if report.valid == "true" else 1
