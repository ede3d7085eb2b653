"""`celery-chaos certify`: run the certification selection against an app and write a report.

Until a profile's scenario selection exists, `certify` runs the smoke certification: stack up,
one task round trip through the per-role proxies with a real worker, stack down.

Example::

    celery-chaos certify --profile smoke --report out/     # exit 0 when the round trip worked
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


def run_smoke_certification(report_dir: Path, stack_provider: str = "local") -> int:
    from harness.smoke import run_smoke
    from harness.stack import open_stack

    report_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stack = open_stack(stack_provider)
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
    (report_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[certify] smoke round trip: {verdict} ({result['round_trip_s']} s); report: {report_dir / 'report.json'}",
          file=sys.stderr)
    return 0 if result["ok"] else 1


def certify_main(args: argparse.Namespace) -> int:
    report = Path(args.report)
    if args.profile == "smoke":
        return run_smoke_certification(report, args.stack)
    try:
        from harness.certification import run_certification
    except ImportError:
        print(f"[certify] the {args.profile!r} scenario selection is not available yet: running the smoke "
              "certification", file=sys.stderr)
        return run_smoke_certification(report, args.stack)
    try:
        return int(run_certification(args))
    except ConfigError as exc:
        print(f"celery-chaos certify: {exc}", file=sys.stderr)
        return 2
