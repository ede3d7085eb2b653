"""Checker scale benchmark: 1,000,000 history operations checked in <= 10 s and <= 2 GiB RSS.

Generates a synthetic history of a correct at-least-once Celery system (every unit kind of
harness.checkers.synthetic: simple tasks, retries, DLQ, chains, chords, killed workers,
visibility-timeout duplicates, indeterminate publishes, rate-limited tasks; partitions and kills)
with a few injected anomalies, writes it as JSON lines to a temporary directory *in a child
process* (so generation does not count towards this process's peak RSS), then in this process:

1. parses the file with the harness's own `read_history` (msgspec decodes each line straight
   into an `Op`, the collector paused);
2. runs `check_all` with every built-in checker;

and prints the time of each step, ops/s, the peak RSS (getrusage) and the ratios to the targets,
plus whether the verdicts report exactly the injected anomalies. Then, unless --no-baseline, it
times the path this replaced on the same file, side by side: the stdlib reader (json.loads and
`Op.from_dict` per line) and the index plus checkers with automatic collection on.

Usage:
    .venv/bin/python benchmarks/checker_scale.py                 # 1M ops
    .venv/bin/python benchmarks/checker_scale.py --ops 200000 --seed 3
    .venv/bin/python benchmarks/checker_scale.py --history run/HISTORY.jsonl   # a real history
    .venv/bin/python benchmarks/checker_scale.py --no-baseline   # skip the before/after comparison
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.checkers import CHECKERS, Expectations, build_index, check_all, overall  # noqa: E402
from harness.checkers.synthetic import Injection, random_plans, reported_violations, synthesize  # noqa: E402
from harness.history import read_history  # noqa: E402
from harness.history.ops import Op  # noqa: E402

TARGET_SECONDS = 10.0
TARGET_RSS_BYTES = 2 * 1024**3
INJECTED = ("drop_execution", "duplicate_effect", "extra_retry", "dlq_twice", "premature_callback",
            "not_redelivered", "foreign_run", "rate_burst")
GENERATE_TIMEOUT_S = 900


def _peak_rss_bytes() -> int:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generate(path: Path, n_ops: int, seed: int) -> None:
    """Child process: write ~n_ops synthetic ops to `path`, and the run's metadata next to it."""
    rng = random.Random(seed)
    sample = synthesize(list(random_plans(2000, random.Random(seed + 1))), partitions=0, seed=seed)
    per_unit = len(sample.ops) / 2000
    n_units = max(1, int(n_ops / per_unit))
    plans = list(random_plans(n_units, rng))
    run = synthesize(plans, [Injection(k, i) for i, k in enumerate(INJECTED)], partitions=20, seed=seed)
    ops = run.ops  # within a few percent of n_ops: the mix is random
    with open(path, "w", encoding="utf-8") as fh:
        for op in ops:
            fh.write(op.to_json())
            fh.write("\n")
    meta = {"ops": len(ops), "units": n_units, "exp": run.exp.to_dict(),
            "expected": sorted(list(e) for e in run.expected)}
    path.with_suffix(".meta.json").write_text(json.dumps(meta))


def read_ops_stdlib(path: Path) -> list[Op]:
    """The baseline reader: stdlib json.loads and `Op.from_dict` per line, collector on."""
    ops: list[Op] = []
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                ops.append(Op.from_dict(json.loads(raw)))
    return ops


def check_uncollected(ops: list[Op], exp: Expectations) -> None:
    """The baseline check: `check_all`'s work (index once, every checker) with collection on."""
    ix = build_index(ops, run_id=exp.run_id, kill_fault_kinds=exp.kill_fault_kinds)
    for fn in CHECKERS.values():
        fn(ix, exp)


def baseline(path: Path, exp: Expectations) -> tuple[float, float]:
    """CPU seconds of the stdlib parse and of the collected check, on the same file."""
    gc.collect()
    c0 = time.process_time()
    ops = read_ops_stdlib(path)
    c_parse = time.process_time() - c0
    c1 = time.process_time()
    check_uncollected(ops, exp)
    return c_parse, time.process_time() - c1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=1_000_000, help="history size (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--history", type=Path, help="check this JSONL history instead of a synthetic one")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip timing the stdlib reader and the collected check for comparison")
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # child-process mode
    args = ap.parse_args(argv)
    if args.generate is not None:
        generate(args.generate, args.ops, args.seed)
        return 0

    with tempfile.TemporaryDirectory(prefix="checker-scale-") as tmp:
        meta: dict = {}
        if args.history is not None:
            path = args.history
            exp = Expectations(require_fault_bite=False)
        else:
            path = Path(tmp) / "history.jsonl"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--generate", str(path), "--ops", str(args.ops),
                            "--seed", str(args.seed)], check=True, timeout=GENERATE_TIMEOUT_S)
            meta = json.loads(path.with_suffix(".meta.json").read_text())
            exp = Expectations.from_dict(meta["exp"])
            print(f"generated {meta['ops']:,} ops ({meta['units']:,} units) in {time.perf_counter() - t0:.1f} s "
                  f"(child process, {path.stat().st_size / 1024**2:.0f} MiB of JSON lines)")

        rss_before = _peak_rss_bytes()
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        ops = list(read_history(path))
        t_parse, c_parse = time.perf_counter() - t0, time.process_time() - c0
        rss_parse = _peak_rss_bytes()
        t1, c1 = time.perf_counter(), time.process_time()
        verdicts = check_all(ops, exp, list(CHECKERS))
        t_check, c_check = time.perf_counter() - t1, time.process_time() - c1
        rss = _peak_rss_bytes()
        n = len(ops)
        del ops
        base = None if args.no_baseline else baseline(path, exp)

    total, c_total = t_parse + t_check, c_parse + c_check
    cores = os.cpu_count() or 1
    print(f"ops                {n:,}   (load average {load_before:.1f} on {cores} cores: wall time includes "
          "waiting for the CPU; CPU time is this process's own)")
    print("                   wall s    CPU s      ops/s (CPU)")
    for label, w, c in (("parse", t_parse, c_parse), ("check_all (10)", t_check, c_check),
                        ("parse + check", total, c_total)):
        print(f"{label:18s} {w:7.2f}  {c:7.2f}  {n / max(c, 1e-9):12,.0f}")
    print(f"peak RSS           {rss / 1024**2:7.0f} MiB (after parsing {rss_parse / 1024**2:.0f} MiB; interpreter "
          f"+ imports {rss_before / 1024**2:.0f} MiB)")
    scale = 1_000_000 / n
    print(f"ratio to target    check {c_check * scale / TARGET_SECONDS:.2f} (wall {t_check * scale / TARGET_SECONDS:.2f}), "
          f"parse+check {c_total * scale / TARGET_SECONDS:.2f} (wall {total * scale / TARGET_SECONDS:.2f}) "
          f"of {TARGET_SECONDS:.0f} s per 1M ops; RSS {rss / TARGET_RSS_BYTES:.2f} of 2 GiB  (<= 1.00 meets it)")
    for name, v in verdicts.items():
        flag = f" error: {v.error.splitlines()[-1]}" if v.error else ""
        print(f"  {name:12s} {v.valid.value:8s} violations={len(v.violations())}{flag}")
    print(f"overall            {overall(verdicts).value}")
    if base is not None:
        b_parse, b_check = base
        print("before/after (CPU s, same file; before = stdlib json + Op.from_dict, checks with the collector on)")
        for label, before, after in (("parse", b_parse, c_parse), ("check", b_check, c_check),
                                     ("parse + check", b_parse + b_check, c_total)):
            print(f"  {label:16s} before {before:6.2f}  after {after:6.2f}  after/before {after / max(before, 1e-9):.2f}")
    if meta:
        expected = {tuple(e) for e in meta["expected"]}
        got = set(reported_violations(verdicts))
        same = expected == got
        print(f"injected anomalies {len(expected)} expected, {len(got)} reported: "
              f"{'exactly the injected set' if same else 'MISMATCH'}")
        if not same:
            print(f"  missed: {sorted(expected - got)[:10]}\n  extra: {sorted(got - expected)[:10]}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
