"""The `celery-chaos` command: stack up/down, explore, replay, certify, check, and the delegated ones.

Every command's argument parsing is here (or in its `DELEGATED` module, for those that parse
their own flags); the work is in the modules each command names.

Exit codes: 0 success / every verdict valid; 1 a verdict is false or unknown; 2 usage or setup error.

Example::

    celery-chaos stack up --json          # prints URLs as one JSON object, holds until Ctrl-C
    celery-chaos certify --profile quick --report report/
    celery-chaos check run/history        # check a recorded history offline
    celery-chaos toxiproxy -port 8474     # the built-in Toxiproxy-compatible server
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.errors import ConfigError, HarnessError

if TYPE_CHECKING:
    from harness.stack.base import Stack


def _install_signal_handlers() -> None:
    # SIGTERM behaves like Ctrl-C so every `with` block tears its processes down (harness.interrupt).
    from harness import interrupt

    interrupt.install()


def _check_stack_up(args: argparse.Namespace) -> None:
    from harness.preflight import check_external_urls, check_local_binaries, check_toxiproxy

    if args.provider == "external":
        check_external_urls(args.broker_url, args.backend_url, args.toxiproxy_url)
        return
    given = [f for f, v in (("--broker-url", args.broker_url), ("--backend-url", args.backend_url)) if v]
    if given:
        raise ConfigError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to --provider external (the {args.provider} stack starts "
                          "its own servers): drop them, or add --provider external")
    if args.provider == "containers" and args.toxiproxy_url:
        raise ConfigError("--toxiproxy-url does not apply to --provider containers (it runs its own Toxiproxy): "
                          "drop it, or use --provider local or external")
    if args.provider == "local":
        check_local_binaries(args.broker)
        if args.toxiproxy_url:
            check_toxiproxy(args.toxiproxy_url, "--toxiproxy-url")
        elif os.environ.get("TOXIPROXY_URL"):
            check_toxiproxy(os.environ["TOXIPROXY_URL"], "TOXIPROXY_URL")


def cmd_stack_up(args: argparse.Namespace) -> int:
    from harness.stack import open_stack

    options: dict[str, Any] = {}
    if args.provider == "local":
        options = {"broker": args.broker, "redis_aof": args.aof}
        if args.toxiproxy_url:
            options["toxiproxy"] = args.toxiproxy_url
    elif args.provider == "containers":
        options = {"broker": args.broker, "redis_aof": args.aof}
        if args.images:
            options["images"] = args.images
    elif args.provider == "external":
        options = {"broker_url": args.broker_url, "backend_url": args.backend_url,
                   "toxiproxy_url": args.toxiproxy_url}
    _install_signal_handlers()
    _check_stack_up(args)
    stack = open_stack(args.provider, **options)
    try:
        with stack:
            info = stack.urls.to_json()
            info["provider"] = args.provider
            info["pids"] = stack.pids()
            info["temp_dirs"] = stack.temp_dirs()
            if args.json:
                print(json.dumps(info), flush=True)
            else:
                print(f"broker (direct):   {info['broker_url']}")
                print(f"backend (direct):  {info['backend_url']}")
                print(f"toxiproxy API:     {info['toxiproxy_url']}")
                for role, ep in stack.urls.proxied.items():
                    print(f"{role.value + ':':18} {ep.url}   (proxy {ep.proxy_name})")
                print("stack is up; Ctrl-C (or SIGTERM) tears it down", flush=True)
            print("stack up", file=sys.stderr, flush=True)
            threading.Event().wait()  # until a signal raises KeyboardInterrupt
    except KeyboardInterrupt:
        print("stack down", file=sys.stderr, flush=True)
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    from harness.processes.reaper import reap_orphans

    if not args.orphans:
        raise ConfigError("stack down needs --orphans (a running `stack up` is stopped with Ctrl-C or SIGTERM)")
    got = reap_orphans()
    print(f"reaped {len(got.pids)} process(es) and {len(got.dirs)} temp dir(s) left by {len(got.owners)} dead "
          f"owner(s){': pids ' + ' '.join(map(str, got.pids)) if got.pids else ''}")
    return 0


# -- explore and replay (the driver is harness.explore) ---------------------------------------


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_variant(items: list[str] | None) -> dict[str, Any]:
    """``["idempotent_effects=false", "rate_limit=null"]`` -> a dict; values are JSON, else strings.

    >>> parse_variant(["idempotent_effects=false", "max_retries=2", "broker=redis"])
    {'idempotent_effects': False, 'max_retries': 2, 'broker': 'redis'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--variant takes NAME=VALUE (e.g. idempotent_effects=false), not {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[name.strip()] = value
    return out


def _add_stack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="local", choices=("local", "containers", "external"),
                   help="stack provider (default: local)")
    p.add_argument("--broker-url", help="external stack: broker URL")
    p.add_argument("--backend-url", help="external stack: result backend URL")
    p.add_argument("--toxiproxy-url", help="external stack: Toxiproxy API URL")


def _open_stack(args: argparse.Namespace, broker: str) -> Stack:
    """The stack ``--stack`` (and its URLs) asks for, with `broker` for the local one."""
    from harness.stack import open_stack

    if args.stack == "local":
        return open_stack("local", broker=broker)
    if args.stack == "external":
        return open_stack("external", broker_url=args.broker_url, backend_url=args.backend_url,
                          toxiproxy_url=args.toxiproxy_url)
    return open_stack(args.stack)


def add_explore_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``celery-chaos explore``."""
    p.add_argument("--deployment", default="sample_system.deploy:prepare",
                   help="MODULE:ATTR of prepare(stack, **variant), a context manager of harness.workload.Deployment")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE",
                   help="a configuration override for prepare (repeatable; JSON values), e.g. idempotent_effects=false")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis seed (same seed, same first schedules)")
    p.add_argument("--claim", default=None,
                   help="the guarantee a run must keep: at-least-once (default) | at-most-once, effects=...")
    p.add_argument("--max-examples", type=int, default=10, help="schedules to generate before giving up")
    p.add_argument("--n-per-kind", type=int, default=1, help="workload units per kind in each run")
    p.add_argument("--submit-interval", type=float, default=0.1, help="seconds between submits")
    p.add_argument("--kinds", help="comma-separated fault kinds to draw from (default: harness.faults.generate."
                                   "DEFAULT_KINDS)")
    p.add_argument("--roles", help="comma-separated network fault targets (default: the four client roles)")
    p.add_argument("--events", help="comma-separated trigger events (effect,execute,receive,publish,worker_lost); "
                                    "'' for time offsets only")
    p.add_argument("--task-names", help="comma-separated task names for triggers and kill_worker_child")
    p.add_argument("--effect-kinds", help="comma-separated effect kinds for on_effect triggers")
    p.add_argument("--max-faults", type=int, default=3, help="faults per schedule, at most")
    p.add_argument("--checkers", help="comma-separated checkers whose failures count (default: all)")
    p.add_argument("--time-budget", type=float, default=300.0,
                   help="seconds of generation and shrinking before keeping the smallest failure so far")
    p.add_argument("--confirm", type=int, default=1, help="replays of the minimal schedule to confirm it")
    p.add_argument("--out", default="chaos-explore", help="output directory (reproducer.json, runs.jsonl, runs/)")
    _add_stack_arguments(p)


def explore_main(args: argparse.Namespace) -> int:
    """``celery-chaos explore``: 0 when no schedule failed, 1 when a reproducer was written, 2 on bad input."""
    from harness.explore import explore
    from harness.faults.generate import FaultSpace

    try:
        variant = parse_variant(args.variant)
        overrides: dict[str, Any] = {"max_faults": args.max_faults}
        for name, value in (("kinds", _csv(args.kinds)), ("roles", _csv(args.roles)),
                            ("events", _csv(args.events)), ("task_names", _csv(args.task_names)),
                            ("effect_kinds", _csv(args.effect_kinds))):
            if value is not None:
                overrides[name] = value
        space = FaultSpace(**overrides)
        stack = _open_stack(args, str(variant.get("broker", "rabbitmq")))
        with stack:
            result = explore(args.deployment, stack, max_examples=args.max_examples, seed=args.seed,
                             out_dir=args.out, variant=variant, space=space, n_per_kind=args.n_per_kind,
                             submit_interval_s=args.submit_interval, checkers=_csv(args.checkers),
                             time_budget_s=args.time_budget, confirm=args.confirm, log=_stderr("explore"),
                             claim=args.claim)
    except ConfigError as exc:
        print(f"celery-chaos explore: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 1 if result.found else 0


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``celery-chaos replay REPRO.json``."""
    p.add_argument("reproducer", help="reproducer.json written by celery-chaos explore")
    p.add_argument("--deployment", default=None, help="MODULE:ATTR overriding the reproducer's deployment")
    p.add_argument("--directory", default=None, help="keep the run's history and logs here")
    _add_stack_arguments(p)


def replay_main(args: argparse.Namespace) -> int:
    """``celery-chaos replay``: 1 when the run fails (reproduced or not), 0 when it is valid, 2 on bad input."""
    from harness.checkers import Validity
    from harness.explore import Reproducer, replay

    try:
        repro = Reproducer.read(args.reproducer)
        stack = _open_stack(args, repro.broker)
        with stack:
            result = replay(args.reproducer, stack, deployment_factory=args.deployment, directory=args.directory,
                            log=_stderr("replay"))
    except ConfigError as exc:
        print(f"celery-chaos replay: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    same = repro.fails_same_way(result)
    print(f"reproduced: {'yes' if same else 'no'} (expected {repro.target.describe()} to fail)")
    return 0 if result.valid is Validity.TRUE else 1


def _stderr(prefix: str) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"[{prefix}] {line}", file=sys.stderr, flush=True)

    return say



def cmd_explore(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    return int(explore_main(args))


def cmd_replay(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    return int(replay_main(args))


def cmd_certify(args: argparse.Namespace) -> int:
    from harness.certify import certify_main

    return int(certify_main(args))


def build_parser() -> argparse.ArgumentParser:
    from harness.preflight import OneLineParser

    p = OneLineParser(prog="celery-chaos", description="Chaos-validation harness for Celery systems.")
    sub = p.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="provision a broker, backend and fault proxy")
    stack_sub = stack.add_subparsers(dest="stack_command", required=True)
    up = stack_sub.add_parser("up", help="start a stack, print its URLs, hold until SIGINT/SIGTERM")
    up.add_argument("--provider", default="local", choices=("local", "containers", "external"))
    up.add_argument("--json", action="store_true", help="one JSON object on stdout; logs on stderr")
    up.add_argument("--broker", default="rabbitmq", choices=("rabbitmq", "redis"))
    up.add_argument("--aof", action="store_true", help="Redis AOF (fsync always) for durability scenarios")
    up.add_argument("--images", choices=("auto", "official", "local"),
                    help="containers provider: official images, locally built ones, or official with fallback")
    up.add_argument("--broker-url")
    up.add_argument("--backend-url")
    up.add_argument("--toxiproxy-url")
    up.set_defaults(func=cmd_stack_up)
    down = stack_sub.add_parser("down", help="--orphans: kill what harness runs whose owner died left behind")
    down.add_argument("--orphans", action="store_true",
                      help="kill every process and remove every temp dir of a dead owner (found by its reaper token "
                           "and marker files)")
    down.set_defaults(func=cmd_stack_down)

    for name, (_m, _f, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)

    ex = sub.add_parser("explore", help="generate fault schedules with Hypothesis; shrink a failure to a reproducer")
    add_explore_arguments(ex)
    ex.set_defaults(func=cmd_explore)
    rp = sub.add_parser("replay", help="run a reproducer again: celery-chaos replay REPRO.json")
    add_replay_arguments(rp)
    rp.set_defaults(func=cmd_replay)

    cert = sub.add_parser("certify", help="run the certification selection and write a report")
    cert.add_argument("--app", default=None,
                      help="MODULE:ATTR of the Celery app (default: the one the workload's prepare() deploys)")
    cert.add_argument("--claim", default=None,
                      help="the guarantee to certify: at-least-once (default) | at-most-once delivery, "
                           "effects=exactly-once (default) | effects=at-least-once, or delivery=X,effects=Y")
    cert.add_argument("--keep-histories", action="store_true",
                      help="write every scenario's history (default: those not valid or with allowed anomalies)")
    cert.add_argument("--workload", default="sample_system.workload:SampleWorkload",
                      help="MODULE:ATTR of the workload (an object, or a class/factory that makes one)")
    cert.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios of the profile")
    cert.add_argument("--profile", default="quick", choices=("smoke", "quick", "full", "soak", "load"),
                      help="load: the quick scenarios under --load (default 10 units/s)")
    cert.add_argument("--load", type=float, default=None, metavar="RATE",
                      help="run each scenario while Locust holds RATE units/s of the workload (faults land mid-load)")
    cert.add_argument("--report", default="chaos-report", help="report directory")
    cert.add_argument("--stack", default="local", choices=("local", "containers", "external"))
    cert.add_argument("--broker-url", help="--stack external: the broker URL (or CHAOS_BROKER_URL)")
    cert.add_argument("--backend-url", help="--stack external: the result backend URL (or CHAOS_BACKEND_URL)")
    cert.add_argument("--toxiproxy-url", help="--stack external: a Toxiproxy API URL, for network faults")
    cert.set_defaults(func=cmd_certify)
    return p


# -- check: here, not in harness/history, which must not import the checkers ---------------


_EXIT_VALID, _EXIT_INVALID, _EXIT_USAGE = 0, 1, 2


def _check_parser() -> argparse.ArgumentParser:
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


def _check_usage_error(message: str, err: TextIO) -> int:
    print(f"celery-chaos check: error: {message}", file=err)
    return _EXIT_USAGE


def check_main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``celery-chaos check HISTORY [--expect FILE.json]``: check a recorded history offline and
    print the verdicts as JSON; return the exit status (0 every verdict valid, 1 some verdict
    false or unknown, 2 usage error). A history kept by a certification is checked with the
    expectations and checkers kept beside it, so it gets the certification's verdict again.

    >>> check_main(["/no/such/history"], err=sys.stdout)
    celery-chaos check: error: no history at '/no/such/history': pass the run's history directory (per-process *.<pid>.jsonl files) or a merged HISTORY.jsonl file
    2
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = _check_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse already printed the usage
        return _EXIT_USAGE if exc.code else _EXIT_VALID

    from harness.history.merge import read_history

    try:
        history = read_history(args.history, strict=args.strict)
    except (FileNotFoundError, ValueError) as exc:
        return _check_usage_error(str(exc).strip("'\""), err)
    except OSError as exc:
        return _check_usage_error(f"cannot read {str(args.history)!r} ({exc.strerror or exc}): pass a readable history", err)
    if len(history) == 0:
        return _check_usage_error(f"parsed 0 ops from {str(args.history)!r} ({len(history.skipped)} unreadable line(s)): "
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
                return _check_usage_error(f"{args.expect}: expectations must be a JSON object, got {type(raw).__name__}", err)
            if isinstance(raw.get("expectations"), dict):  # the certification's form: with the checkers run
                names = raw.get("checkers")
                checkers = [str(n) for n in names] if isinstance(names, list) else None
                raw = raw["expectations"]
            exp = Expectations.from_dict(raw)
    except FileNotFoundError:
        return _check_usage_error(f"no expectations file {str(args.expect)!r}: pass an existing --expect FILE.json", err)
    except json.JSONDecodeError as exc:
        return _check_usage_error(f"{args.expect} is not valid JSON: {exc}", err)
    except (ValueError, TypeError) as exc:
        return _check_usage_error(f"{args.expect}: {exc}", err)

    print(f"celery-chaos check: parsed {len(history)} ops from {args.history}"
          + (f" ({len(history.skipped)} damaged line(s) skipped)" if history.skipped else ""), file=err)
    try:
        verdicts = check_all(history, exp, checkers)
    except ConfigError as exc:
        return _check_usage_error(f"{args.expect}: {exc}", err)
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
    status = _EXIT_VALID if valid.to_json() is True else _EXIT_INVALID
    try:
        json.dump(report, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
        out.flush()
    except BrokenPipeError:  # `celery-chaos check ... | head`: the verdict still decides the status
        pass
    return status


#: Subcommands that own their argument parsing: name -> (module, function, help).
DELEGATED: dict[str, tuple[str, str, str]] = {
    "toxiproxy": ("harness.toxiproxy.__main__", "main",
                  "run the built-in Toxiproxy-compatible server (toxiproxy-server flags)"),
    "check": ("harness.cli", "check_main", "check a history file offline: celery-chaos check HISTORY.jsonl"),
    "images": ("harness.images.cli", "main", "build registry-free container images: celery-chaos images build"),
    "soak": ("harness.load.soak_run", "soak_main", "load with periodic faults for a duration: --duration 30m"),
    "audit": ("harness.audit", "audit_main", "list the risks in an app's configuration: --app MOD:ATTR"),
}


def _delegate(name: str, argv: list[str]) -> int:
    import importlib

    module, func, _help = DELEGATED[name]
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        print(f"celery-chaos {name}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    if name == "soak":
        _install_signal_handlers()
    try:
        return int(fn(argv) or 0)
    except ConfigError as exc:
        print(f"celery-chaos {name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _interrupted(name, exc)


def _interrupted(command: str, exc: BaseException) -> int:
    from harness import interrupt

    print(f"celery-chaos {command}: interrupted by {interrupt.signal_name(exc)}; faults healed, processes "
          "stopped", file=sys.stderr, flush=True)
    return interrupt.exit_code(exc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # These hand their flags over untouched (toxiproxy-server's Go-style -flags, and so on).
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"celery-chaos: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"celery-chaos: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _interrupted(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
