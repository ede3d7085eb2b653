"""`celery-chaos certify`: run the certification selection against an app and write a report.

Until a profile's scenario selection exists, `certify` runs the smoke certification: stack up,
one task round trip through the per-role proxies with a real worker, stack down.

Every input is checked before a server starts (harness.preflight): a setup error is exit 2 and
one line. SIGINT and SIGTERM (harness.interrupt) heal the faults in force, tear the stack down,
write a partial report marked ``interrupted`` with every finished scenario, and exit 130 / 143.

Example::

    celery-chaos certify --profile smoke --report out/     # exit 0 when the round trip worked
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness import interrupt
from harness.errors import ConfigError


def run_smoke_certification(report_dir: Path, stack_provider: str = "local", **stack_options: Any) -> int:
    from harness.report import write_text_atomically
    from harness.smoke import run_smoke
    from harness.stack import open_stack

    report_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stack = open_stack(stack_provider, **stack_options)
    print(f"[certify] smoke: starting the {stack_provider} stack...", file=sys.stderr, flush=True)
    with stack:
        up = time.monotonic() - t0
        print(f"[certify] stack ready in {up:.1f} s; task round trip through the proxies...",
              file=sys.stderr, flush=True)
        result = run_smoke(stack)
    elapsed = time.monotonic() - t0
    verdict = "valid" if result["ok"] else "false"
    report: dict[str, Any] = {
        "profile": "smoke", "valid": verdict, "elapsed_s": round(elapsed, 2), "stack_ready_s": round(up, 2),
        "scenarios": [{"name": "smoke_round_trip", "valid": verdict, "result": result}],
    }
    write_text_atomically(report_dir / "report.json", json.dumps(report, indent=2))
    print(f"[certify] smoke round trip: {verdict} ({result['round_trip_s']} s); report: {report_dir / 'report.json'}",
          file=sys.stderr)
    return 0 if result["ok"] else 1


def write_partial_report(args: argparse.Namespace, exc: BaseException) -> int:
    """After an interrupt: write what finished, marked interrupted; print one line; return 130 / 143."""
    from harness.report import CertificationReport, write_report

    name = interrupt.signal_name(exc)
    partial = getattr(exc, "partial_report", None)
    if not isinstance(partial, CertificationReport):
        partial = CertificationReport(profile=args.profile, scenarios=[], app=args.app, workload=args.workload)
    partial = dataclasses.replace(partial, interrupted=name)
    try:
        paths = write_report(partial, Path(args.report))
        where = f"partial report with {len(partial.scenarios)} finished scenario(s): {paths['html']}"
    except OSError as err:
        where = f"the partial report could not be written ({err.strerror or err})"
    print(f"celery-chaos certify: interrupted by {name}; faults healed, stack torn down; {where}",
          file=sys.stderr, flush=True)
    return interrupt.exit_code(exc)


#: A bound on --load: this runs on loopback against the harness's own stack, never a real system.
MAX_LOAD_RATE = 1000.0


def validate_certify(args: argparse.Namespace) -> None:
    """Every check `celery-chaos certify` needs before it starts a server; raises ConfigError.

    Here, not in harness.preflight: the certification's own checks (scenario names, the
    workload's locustfile) need the certification, which preflight must not import.
    """
    from harness.preflight import check_app, check_report_dir, check_stack, check_workload, stack_options

    check_report_dir(args.report)
    stack_options(args)  # --topology cluster with a provider that runs one broker
    if getattr(args, "claim", None):
        from harness.checkers.claim import Claim

        Claim.parse(args.claim)
    if args.app:  # else the workload's prepare() names the app
        check_app(args.app)
    workload = check_workload(args.workload)
    rate = getattr(args, "load", None)
    if rate is not None and not (0 < rate <= MAX_LOAD_RATE):
        raise ConfigError(f"--load {rate:g}: give the units per second Locust holds, a number in (0, {MAX_LOAD_RATE}] "
                          "(e.g. --load 10)")
    if rate is not None or getattr(args, "profile", None) == "load":
        from harness.certification.under_load import locustfile_of

        locustfile_of(workload)
    if getattr(args, "only", None):
        from harness.certification.catalogue import select

        select(args.profile, list(args.only))
    check_stack(args)


def certify_main(args: argparse.Namespace) -> int:
    interrupt.install()
    from harness.preflight import stack_options

    try:
        validate_certify(args)
    except ConfigError as exc:
        print(f"celery-chaos certify: {exc}", file=sys.stderr)
        return 2
    report = Path(args.report)
    try:
        if args.profile == "smoke":
            return run_smoke_certification(report, args.stack, **stack_options(args))
        from harness.certification import run_certification

        return int(run_certification(args, stack_options(args)))
    except ConfigError as exc:
        print(f"celery-chaos certify: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return write_partial_report(args, exc)
