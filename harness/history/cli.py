"""``celery-chaos check HISTORY [--expect FILE.json]``: check a recorded history offline.

Responsibility: read a history (a merged ``HISTORY.jsonl`` or a run's history directory), run
every checker with the given expectations and print the verdicts as JSON.

Exit status: 0 every verdict valid; 1 some verdict false or unknown; 2 usage error (missing
file, bad JSON, bad expectations).

Example::

    celery-chaos check runs/r7/history --expect runs/r7/expectations.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from harness.history.merge import read_history

__all__ = ["check_main"]

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    from harness.preflight import OneLineParser

    p = OneLineParser(
        prog="celery-chaos check",
        description="Check a recorded history offline and print the verdicts as JSON.",
    )
    p.add_argument("history", type=Path,
                   help="a merged HISTORY.jsonl, or a run's history directory of per-process files")
    p.add_argument("--expect", type=Path, default=None, metavar="FILE.json",
                   help="expectations (what the configuration allows) as JSON; default: the checkers' defaults")
    p.add_argument("--strict", action="store_true",
                   help="fail on damaged history lines (a torn last line per file is always tolerated)")
    return p


def _usage_error(message: str, err: TextIO) -> int:
    print(f"celery-chaos check: error: {message}", file=err)
    return EXIT_USAGE


def check_main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``celery-chaos check`` with `argv` (without the program name); return the exit status.

    >>> check_main(["/no/such/history"], err=sys.stdout)
    celery-chaos check: error: no history at '/no/such/history': pass the run's history directory (per-process *.<pid>.jsonl files) or a merged HISTORY.jsonl file
    2
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = _parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse already printed the usage
        return EXIT_USAGE if exc.code else EXIT_VALID

    try:
        history = read_history(args.history, strict=args.strict)
    except (FileNotFoundError, ValueError) as exc:
        return _usage_error(str(exc).strip("'\""), err)
    except OSError as exc:
        return _usage_error(f"cannot read {str(args.history)!r} ({exc.strerror or exc}): pass a readable history", err)
    if len(history) == 0:
        return _usage_error(f"parsed 0 ops from {str(args.history)!r} ({len(history.skipped)} unreadable line(s)): "
                            "it is empty or not a history; pass a HISTORY.jsonl of JSON op lines or a run's "
                            "history directory", err)

    from harness.checkers import check_all, overall
    from harness.checkers.expectations import Expectations
    from harness.errors import ConfigError

    checkers: list[str] | None = None
    if args.expect is None:
        # A certification writes the expectations beside a kept history: the same verdict again.
        sidecar = args.history.with_name(args.history.name.removesuffix(".jsonl") + ".expectations.json")
        if args.history.is_file() and sidecar.is_file():
            args.expect = sidecar
    try:
        if args.expect is None:
            exp = Expectations()
        else:
            raw: Any = json.loads(args.expect.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                return _usage_error(f"{args.expect}: expectations must be a JSON object, got {type(raw).__name__}", err)
            if isinstance(raw.get("expectations"), dict):  # the certification's form: with the checkers run
                names = raw.get("checkers")
                checkers = [str(n) for n in names] if isinstance(names, list) else None
                raw = raw["expectations"]
            exp = Expectations.from_dict(raw)
    except FileNotFoundError:
        return _usage_error(f"no expectations file {str(args.expect)!r}: pass an existing --expect FILE.json", err)
    except json.JSONDecodeError as exc:
        return _usage_error(f"{args.expect} is not valid JSON: {exc}", err)
    except (ValueError, TypeError) as exc:
        return _usage_error(f"{args.expect}: {exc}", err)

    print(f"celery-chaos check: parsed {len(history)} ops from {args.history}"
          + (f" ({len(history.skipped)} damaged line(s) skipped)" if history.skipped else ""), file=err)
    try:
        verdicts = check_all(history, exp, checkers)
    except ConfigError as exc:
        return _usage_error(f"{args.expect}: {exc}", err)
    valid = overall(verdicts)
    report = {
        "valid": valid.to_json(),
        "expectations": str(args.expect) if args.expect is not None else "defaults",
        "history": {
            "path": str(args.history),
            "ops": len(history),
            "skipped_lines": [s.to_dict() for s in history.skipped],
        },
        "verdicts": {name: v.to_dict() for name, v in verdicts.items()},
    }
    status = EXIT_VALID if valid.to_json() is True else EXIT_INVALID
    try:
        json.dump(report, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
        out.flush()
    except BrokenPipeError:  # `celery-chaos check ... | head`: the verdict still decides the status
        pass
    return status


if __name__ == "__main__":
    raise SystemExit(check_main())
