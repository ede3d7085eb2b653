"""`python -m harness.toxiproxy`: a drop-in for `toxiproxy-server`, with the same flags.

Flags (Go `flag` syntax, so `-port 8474`, `-port=8474` and `--port 8474` all work):
  -host       API listen host (default localhost: loopback only)
  -port       API listen port (default 8474)
  -config     JSON file of proxies applied at start like POST /populate (errors are logged)
  -seed       seed for toxicity rolls and jitter (default: random)
  -version    print `toxiproxy-server version 2.12.0` and exit
  -proxy-metrics, -runtime-metrics   accepted for compatibility; /metrics is not served

Environment: LOG_LEVEL (trace, debug, info, warn, error; default info) for the JSON log on stdout;
CHAOS_TOXIPROXY_LOOP: ``uvloop`` (the default when installed) or ``asyncio`` (the stdlib loop);
CHAOS_TOXIPROXY_NICE: a niceness to serve at (default: unchanged; see `set_priority`).

Example:
    python -m harness.toxiproxy -host 127.0.0.1 -port 8474
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from .api import VERSION
from .server import configure_logging, run

_STRING_FLAGS = {"host": "localhost", "port": "8474", "config": "", "seed": ""}
_BOOL_FLAGS = ("version", "proxy-metrics", "runtime-metrics", "help", "h")

USAGE = f"""Usage of toxiproxy-server (built-in, Toxiproxy {VERSION} compatible):
  -config string
        JSON file containing proxies to create on startup
  -host string
        Host for toxiproxy's API to listen on (default "localhost")
  -port string
        Port for toxiproxy's API to listen on (default "8474")
  -proxy-metrics
        enable metrics for proxy (accepted, not served)
  -runtime-metrics
        enable metrics related to go runtime (accepted, not served)
  -seed int
        Seed for randomizing toxics with
  -version
        print the version (2.12.0)
"""


class FlagError(Exception):
    pass


def parse_flags(argv: list[str]) -> dict[str, str | bool]:
    """Parse Go-style flags; raises FlagError with Go's wording."""
    values: dict[str, str | bool] = {**_STRING_FLAGS, **{name: False for name in _BOOL_FLAGS}}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break  # Go stops at the first non-flag argument
        name = arg.lstrip("-")
        if arg.startswith("---") or not name:
            raise FlagError(f"bad flag syntax: {arg}")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in _BOOL_FLAGS:
            if value is None:
                values[name] = True
            elif value.lower() in ("1", "t", "true"):
                values[name] = True
            elif value.lower() in ("0", "f", "false"):
                values[name] = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
        elif name in _STRING_FLAGS:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = argv[i]
            values[name] = value
        else:
            raise FlagError(f"flag provided but not defined: -{name}")
        i += 1
    return values


def _raise_open_file_limit() -> None:
    # Go raises the soft RLIMIT_NOFILE to the hard limit at start; each proxied connection uses two fds.
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


LOOP_ENV = "CHAOS_TOXIPROXY_LOOP"


def loop_factory(choice: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to serve on: uvloop unless `choice` is "asyncio" (or uvloop is missing).

    Why uvloop: a proxied Celery task is about ten small messages relayed one by one, and the
    stdlib selector loop's Python-level cost per read and write is most of the proxy's
    overhead on that path; libuv does the same callbacks for a fraction of it.

    >>> loop_factory("asyncio") is None
    True
    >>> loop_factory("gevent")
    Traceback (most recent call last):
    ...
    ValueError: CHAOS_TOXIPROXY_LOOP must be 'uvloop' or 'asyncio', not 'gevent'
    """
    name = (choice or "uvloop").strip().lower()
    if name not in ("uvloop", "asyncio"):
        raise ValueError(f"{LOOP_ENV} must be 'uvloop' or 'asyncio', not {choice!r}")
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


NICE_ENV = "CHAOS_TOXIPROXY_NICE"


def set_priority(choice: str | None) -> int | None:
    """Serve at niceness `choice` when given and allowed; the niceness set, or None.

    Unset (the default) leaves the priority alone. Measured on the 2-core box, a boost (-10)
    did not raise the Celery-path throughput ratio: the knob exists to measure that again, and
    for a machine where the proxy starves behind the system under test. Only root
    (CAP_SYS_NICE) may lower niceness; where it is refused this is a no-op.

    >>> set_priority(None) is None
    True
    >>> set_priority("x")
    Traceback (most recent call last):
    ...
    ValueError: CHAOS_TOXIPROXY_NICE must be an integer from -20 to 19, not 'x'
    """
    if choice is None or not choice.strip():
        return None
    try:
        nice = int(choice)
    except ValueError:
        raise ValueError(f"{NICE_ENV} must be an integer from -20 to 19, not {choice!r}") from None
    if not -20 <= nice <= 19:
        raise ValueError(f"{NICE_ENV} must be an integer from -20 to 19, not {choice!r}")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        return None
    return nice


def main(argv: list[str] | None = None) -> int:
    """Run the server with Toxiproxy's flags; returns the exit code (0 on a clean SIGTERM/SIGINT)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        flags = parse_flags(args)
    except FlagError as e:
        print(e, file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 2
    if flags.get("help") or flags.get("h"):
        print(USAGE, file=sys.stderr, end="")
        return 0
    if flags["version"]:
        print(f"toxiproxy-server version {VERSION}")
        return 0
    port_text = str(flags["port"])
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        print(f"invalid -port {port_text!r}: use a number from 0 to 65535, e.g. -port 8474", file=sys.stderr)
        return 2
    seed_text = str(flags["seed"])
    seed: int | None = None
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            print(f'invalid value "{seed_text}" for flag -seed: parse error', file=sys.stderr)
            return 2
    try:
        factory = loop_factory(os.environ.get(LOOP_ENV))
        set_priority(os.environ.get(NICE_ENV))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    configure_logging(os.environ.get("LOG_LEVEL"))
    _raise_open_file_limit()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run(str(flags["host"]), int(port_text), str(flags["config"]) or None, seed))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
