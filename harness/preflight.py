"""Checks that run before any server starts: every setup error is one line naming the fix.

Responsibility: turn what the user passed (report directory, app, workload, stack URLs) into
a ConfigError *before* a stack starts, instead of a traceback or an UNKNOWN verdict minutes later.

Example:
    >>> check_report_dir("/proc/version")              # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: --report '/proc/version' is a file, not a directory: ...
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from harness.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (exit 2), naming where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """`text` on one line (exception messages may span several)."""
    return " ".join(str(text).split())


def _why(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    return one_line(f"{type(exc).__name__}: {exc}")


def check_report_dir(path: str | Path) -> Path:
    """The report directory, if it is (or can be made) a writable directory; else a ConfigError."""
    p = Path(path)
    fix = "pass --report with a directory you can write (it is created when missing)"
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"--report {str(p)!r} is a file, not a directory: {fix}")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"--report {str(p)!r} is not writable: {fix}")
        return p
    parent = p.absolute().parent
    # The nearest existing ancestor decides whether mkdir -p can work.
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--report {str(p)!r} cannot be created: {str(parent)!r} is a file; {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--report {str(p)!r} cannot be created: {str(parent)!r} is not writable; {fix}")
    return p


def check_app(spec: str) -> Any:
    """Import the Celery app at MODULE:ATTR; a ConfigError when it fails to import or is no Celery app."""
    from celery import Celery

    from harness.workload import load_object

    try:
        app = load_object(spec, "--app")
    except ConfigError as exc:
        raise ConfigError(one_line(exc)) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import-time failure is the user's module
        raise ConfigError(f"--app {spec!r}: importing it failed with {_why(exc)}; fix the module, "
                          "or pass the MODULE:ATTR of your Celery app") from None
    if not isinstance(app, Celery):
        raise ConfigError(f"--app {spec!r} is of type {type(app).__name__}, not a Celery app: pass MODULE:ATTR of a "
                          "celery.Celery instance (e.g. sample_system:app)")
    return app


def check_workload(spec: str) -> Any:
    """The workload at MODULE:ATTR (made by its class or factory); a ConfigError on any failure."""
    from harness.workload import load_workload

    try:
        return load_workload(spec)
    except ConfigError as exc:
        raise ConfigError(one_line(exc)) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module or factory failed
        raise ConfigError(f"--workload {spec!r}: loading it failed with {_why(exc)}; fix the module or its "
                          "factory, or pass another MODULE:ATTR (e.g. sample_system.workload:SampleWorkload)") from None


def check_toxiproxy(url: str, what: str) -> None:
    """One fast probe: `url` must answer GET /version like a Toxiproxy."""
    from harness.toxiproxy.client import ToxiproxyClient

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{what} {url!r} is not an http:// URL: use e.g. http://127.0.0.1:8474")
    if urlsplit(url).port:
        check_connects(url, what)  # listening at all (waits CHAOS_CONNECT_WAIT_S for one still starting)
    try:
        ToxiproxyClient(url, timeout=2.0).version()
    except ConfigError as exc:
        raise ConfigError(f"{what} {url!r}: {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - unreachable or not a Toxiproxy: both are setup errors
        raise ConfigError(f"{what} {url!r} does not answer as a Toxiproxy ({_why(exc)}): start toxiproxy-server "
                          "there, fix the URL, or unset it to use the built-in proxy") from None


def check_connects(url: str, what: str, timeout: float = 2.0) -> None:
    """One TCP connect to the host:port of `url`; a ConfigError naming the URL when it fails."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not parts.scheme or not host or not port:
        raise ConfigError(f"{what} {url!r} needs a scheme, host and port, e.g. amqp://user:pass@127.0.0.1:5672//")
    # One connect by default: a typo fails at once. CHAOS_CONNECT_WAIT_S gives a server that is
    # still starting (a Compose service whose health check passes before its listener opens)
    # that many seconds, polled twice a second.
    try:
        wait_s = max(0.0, min(300.0, float(os.environ.get("CHAOS_CONNECT_WAIT_S") or 0)))
    except ValueError:
        raise ConfigError(f"CHAOS_CONNECT_WAIT_S={os.environ.get('CHAOS_CONNECT_WAIT_S')!r} is not a number of "
                          "seconds: set it to e.g. 30, or unset it") from None
    deadline = time.monotonic() + wait_s
    for _ in range(1000):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ConfigError(f"{what} {url!r}: cannot connect to {host}:{port} "
                                  f"({one_line(exc.strerror or exc)}); start that server or fix the URL") from None
            time.sleep(0.5)


def check_external_urls(broker_url: str | None, backend_url: str | None, toxiproxy_url: str | None,
                        prefix: str = "--") -> None:
    """The external stack's URLs are given and each answers once."""
    broker_url = broker_url or os.environ.get("CHAOS_BROKER_URL", "")
    backend_url = backend_url or os.environ.get("CHAOS_BACKEND_URL", "")
    toxiproxy_url = toxiproxy_url or os.environ.get("TOXIPROXY_URL", "")
    if not broker_url or not backend_url:
        raise ConfigError(f"the external stack needs {prefix}broker-url and {prefix}backend-url (or CHAOS_BROKER_URL "
                          f"and CHAOS_BACKEND_URL); add {prefix}toxiproxy-url (or TOXIPROXY_URL) for network faults")
    check_connects(broker_url, f"{prefix}broker-url")
    check_connects(backend_url, f"{prefix}backend-url")
    if toxiproxy_url:
        check_toxiproxy(toxiproxy_url, f"{prefix}toxiproxy-url")


def check_local_binaries(broker: str = "rabbitmq") -> None:
    """The servers the local stack runs are installed (and epmd, which RabbitMQ needs)."""
    from harness.stack.redis import find_redis_server

    if broker == "rabbitmq":
        from harness.stack.rabbitmq import find_rabbitmq_server

        find_rabbitmq_server(os.environ.get("CHAOS_RABBITMQ_SERVER"))
        if shutil.which("epmd") is None:
            raise ConfigError("epmd (Erlang's port mapper, needed by RabbitMQ) is not on PATH: install erlang-base "
                              "(it comes with rabbitmq-server), or add its directory to PATH")
    find_redis_server(os.environ.get("CHAOS_REDIS_SERVER"))


def check_stack(args: argparse.Namespace) -> None:
    """What `--stack` (and its URLs) needs, checked with one fast probe each."""
    stack = getattr(args, "stack", "local")
    urls = [getattr(args, n, None) for n in ("broker_url", "backend_url", "toxiproxy_url")]
    if stack == "external":
        check_external_urls(urls[0], urls[1], urls[2])
        return
    given = [f"--{n.replace('_', '-')}" for n, v in zip(("broker_url", "backend_url", "toxiproxy_url"), urls,
                                                         strict=True) if v]
    if given:
        raise ConfigError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to --stack external (the {stack} stack starts its own "
                          f"servers): drop them, or add --stack external")
    if stack == "local":
        check_local_binaries()
        env_url = os.environ.get("TOXIPROXY_URL")
        if env_url:
            check_toxiproxy(env_url, "TOXIPROXY_URL")


def stack_options(args: argparse.Namespace) -> dict[str, Any]:
    """The open_stack options `args` asks for (the external stack's URLs; the local stack's topology)."""
    topology = getattr(args, "topology", "single") or "single"
    if topology != "single" and getattr(args, "stack", "local") != "local":
        raise ConfigError(f"--topology {topology} needs --stack local (the other providers run one broker)")
    if getattr(args, "stack", "local") != "external":
        return {"topology": topology} if topology != "single" else {}
    return {"broker_url": getattr(args, "broker_url", None), "backend_url": getattr(args, "backend_url", None),
            "toxiproxy_url": getattr(args, "toxiproxy_url", None)}
