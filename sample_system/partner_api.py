"""The partner API: a real local HTTP service (payments and messaging) with failure knobs and a request log.

Responsibility: stand in for the third-party API the sample system depends on, so retries,
rate limits and the circuit breaker are observable from outside. Standard library only
(`ThreadingHTTPServer`); run it with ``python -m sample_system.partner_api --port N`` or, in
tests and stacks, with the `PartnerAPI` context manager (own process group, always reaped).

Business endpoints (all JSON; ``Idempotency-Key`` header de-duplicates, as payment APIs do):

* ``POST /v1/charges`` ``{amount, currency, card, order}`` -> 201 (200 with ``"replayed": true``
  for a known key). Test cards: ``tok_visa`` succeeds, ``tok_declined`` -> 402,
  ``tok_revoked`` -> 401, ``tok_unavailable`` -> 503 on every call.
* ``POST /v1/messages`` ``{channel, to, body}`` -> 202.
* ``GET /v1/health`` -> 200.

Control endpoints (never faulted):

* ``POST /_control`` ``{failure_rate, status_codes, latency_ms, seed, fail_next, stall_next,
  stall_ms}`` sets knobs (any subset) and returns all of them; ``GET /_control`` reads them.
  ``failure_rate`` in [0, 1] fails that share of business calls with a status drawn from
  ``status_codes``; ``fail_next`` fails exactly the next N; ``latency_ms`` delays every call
  (an int or a ``[min, max]`` range); ``stall_next`` delays only the next N calls by an extra
  ``stall_ms`` (to trip a time limit once); ``seed`` makes the draws repeatable.
* ``GET /_log`` -> ``{"requests": [...]}`` one entry per business call (``since=<seq>`` pages),
  ``DELETE /_log`` clears it. Entries carry ``seq, time, mono_ns, method, path, status,
  injected, idempotency_key, task_id, attempt, pid``. ``mono_ns`` is CLOCK_MONOTONIC, the
  clock the harness history uses.

Example:
    >>> with PartnerAPI() as partner:                      # doctest: +SKIP
    ...     partner.control(failure_rate=0.5, status_codes=[503], seed=1)
    ...     requests = partner.log()
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.processes import reaper

LOG_CAPACITY = 200_000
KNOB_NAMES = ("failure_rate", "status_codes", "latency_ms", "seed", "fail_next", "stall_next", "stall_ms")
CARD_BEHAVIOUR = {"tok_declined": (402, "card_declined"), "tok_revoked": (401, "api_key_revoked"),
                  "tok_unavailable": (503, "processor_unavailable")}


class KnobError(ValueError):
    """A /_control body that cannot be applied; the message names the knob and the fix."""


class PartnerState:
    """Knobs, request log and stored charges/messages of one server; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failure_rate = 0.0
        self.status_codes: list[int] = [503]
        self.latency_ms: list[int] = [0, 0]
        self.seed: int | None = None
        self.fail_next = 0
        self.stall_next = 0
        self.stall_ms = 0
        self.rng = random.Random()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_CAPACITY)
        self.seq = 0
        self.charges: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}

    def knobs(self) -> dict[str, Any]:
        return {"failure_rate": self.failure_rate, "status_codes": list(self.status_codes),
                "latency_ms": list(self.latency_ms), "seed": self.seed, "fail_next": self.fail_next,
                "stall_next": self.stall_next, "stall_ms": self.stall_ms}

    def apply(self, body: Any) -> dict[str, Any]:
        """Validate every knob in `body` first, then set them all (all or nothing)."""
        if not isinstance(body, dict):
            raise KnobError(f"/_control expects a JSON object of knobs {list(KNOB_NAMES)}, got {type(body).__name__}")
        unknown = sorted(set(body) - set(KNOB_NAMES))
        if unknown:
            raise KnobError(f"unknown knob(s) {unknown}: known knobs are {list(KNOB_NAMES)}")
        new: dict[str, Any] = {}
        if "failure_rate" in body:
            fr = body["failure_rate"]
            if isinstance(fr, bool) or not isinstance(fr, int | float) or not 0.0 <= fr <= 1.0:
                raise KnobError(f"failure_rate={fr!r} must be a number in [0, 1], e.g. 0.2")
            new["failure_rate"] = float(fr)
        if "status_codes" in body:
            sc = body["status_codes"]
            if (not isinstance(sc, list) or not sc
                    or any(isinstance(c, bool) or not isinstance(c, int) or not 400 <= c <= 599 for c in sc)):
                raise KnobError(f"status_codes={sc!r} must be a non-empty list of 4xx/5xx ints, e.g. [500, 503, 429]")
            new["status_codes"] = list(sc)
        if "latency_ms" in body:
            lat = body["latency_ms"]
            if isinstance(lat, int) and not isinstance(lat, bool):
                lat = [lat, lat]
            if (not isinstance(lat, list) or len(lat) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in lat) or lat[0] > lat[1]):
                raise KnobError(f"latency_ms={body['latency_ms']!r} must be an int >= 0 or [min, max], e.g. [50, 200]")
            new["latency_ms"] = list(lat)
        if "seed" in body:
            seed = body["seed"]
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise KnobError(f"seed={seed!r} must be an int or null")
            new["seed"] = seed
        for name in ("fail_next", "stall_next", "stall_ms"):
            if name in body:
                v = body[name]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise KnobError(f"{name}={v!r} must be an int >= 0")
                new[name] = v
        with self.lock:
            for k, v in new.items():
                setattr(self, k, v)
            if "seed" in new:
                self.rng = random.Random(new["seed"])
            return self.knobs()

    def draw(self) -> tuple[float, int | None]:
        """(delay seconds, injected status or None) for one business call."""
        with self.lock:
            lo, hi = self.latency_ms
            delay = (lo if lo == hi else self.rng.randint(lo, hi)) / 1000.0
            if self.stall_next > 0:
                self.stall_next -= 1
                delay += self.stall_ms / 1000.0
            status: int | None = None
            if self.fail_next > 0:
                self.fail_next -= 1
                status = self.rng.choice(self.status_codes)
            elif self.failure_rate > 0 and self.rng.random() < self.failure_rate:
                status = self.rng.choice(self.status_codes)
            return delay, status

    def append_log(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)

    def read_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.log if e["seq"] > since]


class _Handler(BaseHTTPRequestHandler):
    server: _PartnerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is the record; stderr stays quiet

    # ------------------------------------------------------------- plumbing
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}
        return json.loads(raw)

    # ------------------------------------------------------------- verbs
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        state = self.server.state
        if url.path == "/v1/health":
            self._send(200, {"status": "ok"})
        elif url.path == "/_log":
            qs = parse_qs(url.query)
            since = int(qs.get("since", ["0"])[0])
            self._send(200, {"requests": state.read_log(since)})
        elif url.path == "/_control":
            with state.lock:
                self._send(200, state.knobs())
        else:
            self._send(404, {"error": f"no route GET {url.path}"})

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/_log":
            with self.server.state.lock:
                self.server.state.log.clear()
            self._send(200, {"cleared": True})
        else:
            self._send(404, {"error": f"no route DELETE {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        state = self.server.state
        try:
            body = self._body()
        except ValueError as exc:
            self._send(400, {"error": f"request body is not JSON: {exc}"})
            return
        if url.path == "/_control":
            try:
                self._send(200, state.apply(body))
            except KnobError as exc:
                self._send(400, {"error": str(exc)})
            return
        if url.path not in ("/v1/charges", "/v1/messages"):
            self._send(404, {"error": f"no route POST {url.path}"})
            return
        started = time.monotonic()
        delay, injected = state.draw()
        if delay:
            time.sleep(delay)
        if injected is not None:
            status, resp, headers = injected, {"error": "injected_failure", "status": injected}, {}
            if injected == 429:
                headers = {"Retry-After": "1"}
        elif url.path == "/v1/charges":
            (status, resp), headers = self._charge(body), {}
        else:
            (status, resp), headers = self._message(body), {}
        state.append_log({
            "time": time.time(), "mono_ns": time.monotonic_ns(), "method": "POST", "path": url.path,
            "status": status, "injected": injected is not None,
            "idempotency_key": self.headers.get("Idempotency-Key"), "task_id": self.headers.get("X-Task-Id"),
            "attempt": _int_or_none(self.headers.get("X-Attempt")), "pid": _int_or_none(self.headers.get("X-Worker-Pid")),
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "card": body.get("card") if isinstance(body, dict) else None,
            "channel": body.get("channel") if isinstance(body, dict) else None,
        })
        self._send(status, resp, headers)

    def _charge(self, body: Any) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if not isinstance(body, dict):
            return 400, {"error": "charge body must be a JSON object"}
        missing = [f for f in ("amount", "currency", "card", "order") if f not in body]
        if missing:
            return 422, {"error": f"missing field(s) {missing}"}
        if not isinstance(body["amount"], int) or body["amount"] <= 0:
            return 422, {"error": f"amount={body['amount']!r} must be a positive int (minor units)"}
        behaviour = CARD_BEHAVIOUR.get(str(body["card"]))
        if behaviour is not None:
            return behaviour[0], {"error": behaviour[1]}
        key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
        with state.lock:
            existing = state.charges.get(key)
            if existing is not None:
                return 200, {**existing, "replayed": True}
            charge = {"id": "ch_" + uuid.uuid4().hex[:16], "status": "succeeded", "amount": body["amount"],
                      "currency": body["currency"], "order": body["order"]}
            state.charges[key] = charge
        return 201, dict(charge)

    def _message(self, body: Any) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if not isinstance(body, dict) or not all(f in body for f in ("channel", "to", "body")):
            return 422, {"error": "message needs channel, to and body"}
        key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
        with state.lock:
            existing = state.messages.get(key)
            if existing is not None:
                return 200, {**existing, "replayed": True}
            msg = {"id": "msg_" + uuid.uuid4().hex[:16], "status": "queued", "channel": body["channel"]}
            state.messages[key] = msg
        return 202, dict(msg)


def _int_or_none(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


class _PartnerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, _Handler)
        self.state = PartnerState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, time limit) while a call was stalled is expected here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def serve(host: str = "127.0.0.1", port: int = 0, *, ready: Any = None) -> None:
    """Run the partner API in this process until SIGTERM/SIGINT; print the URL when listening."""
    server = _PartnerServer((host, port))
    url = f"http://{host}:{server.server_address[1]}"

    def _stop(_sig: int, _frame: Any) -> None:
        # shutdown() blocks until serve_forever returns, so it must run off the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"partner_api listening on {url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_system.partner_api", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback by default)")
    parser.add_argument("--port", type=int, default=8081, help="listen port, 0 picks a free one (default 8081)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except OSError as exc:
        print(f"partner_api: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "pick a free port, or --port 0 for any free one", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


# ---------------------------------------------------------------------------------------- client side
class PartnerControl:
    """Talks to a running partner API's control endpoints (knobs and request log).

    >>> PartnerControl("http://127.0.0.1:8081").url
    'http://127.0.0.1:8081'
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 400:
                raise ConfigError(f"partner API refused {method} {path}: {detail}") from None
            raise HarnessError(f"partner API {method} {path} answered {exc.code}: {detail}") from None

    def control(self, **knobs: Any) -> dict[str, Any]:
        """Set any of the knobs (see the module docstring); return all of them."""
        return self._call("POST", "/_control", knobs)

    def knobs(self) -> dict[str, Any]:
        return self._call("GET", "/_control")

    def reset(self) -> dict[str, Any]:
        """No failures, no latency, fresh log."""
        self.clear_log()
        return self.control(failure_rate=0.0, status_codes=[503], latency_ms=0, fail_next=0, seed=None,
                            stall_next=0, stall_ms=0)

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """Business requests seen so far (``seq > since``), oldest first."""
        return list(self._call("GET", f"/_log?since={since}")["requests"])

    def clear_log(self) -> None:
        self._call("DELETE", "/_log")

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/v1/health").get("status") == "ok"
        except (OSError, HarnessError, ValueError):
            return False


class PartnerAPI(PartnerControl):
    """The partner API in a subprocess (own process group), for tests and stacks.

    >>> with PartnerAPI() as partner:                       # doctest: +SKIP
    ...     partner.control(fail_next=2, status_codes=[503])
    """

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", startup_timeout: float = 15.0,
                 python: str = sys.executable) -> None:
        super().__init__(f"http://{host}:{port}")
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    def start(self) -> PartnerAPI:
        if self.proc is not None:
            raise HarnessError("PartnerAPI already started: use a new PartnerAPI for a second server")
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.python, "-m", "sample_system.partner_api", "--host", self.host, "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True,  # own process group: killed as a group, never orphaned
            env=reaper.child_env(None),  # the reaper kills it even when its owner is SIGKILLed
        )
        reaper.register_group(self.proc.pid)
        try:
            line = self._read_ready_line()
            self.url = line.rsplit(" ", 1)[-1].strip()
            self.port = int(self.url.rsplit(":", 1)[-1])
            deadline = time.monotonic() + self.startup_timeout
            while not self.healthy():
                if time.monotonic() > deadline:
                    raise StackStartTimeout(f"partner API at {self.url} printed its URL but /v1/health "
                                            f"never answered within {self.startup_timeout}s{self._stderr_tail()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StackStartTimeout(f"partner API did not print its URL within {self.startup_timeout}s "
                                            f"(saw {buf!r}){self._stderr_tail()}")
                if not sel.select(timeout=min(remaining, 0.2)):
                    if self.proc.poll() is not None:
                        raise StackStartTimeout(f"partner API exited with {self.proc.returncode} before "
                                                f"listening{self._stderr_tail()}; is port {self.port} free?")
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise StackStartTimeout(f"partner API closed stdout before listening{self._stderr_tail()}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
            if tail:
                return f"; stderr tail:\n{tail}"
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc is not None:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:  # pragma: no cover - defensive
                proc.kill()
            reaper.unregister_group(proc.pid)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> PartnerAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def partner_behind_proxy(stack: Any, name: str = "partner_api") -> Iterator[tuple[PartnerAPI, str]]:
    """Start the partner API and route it through `stack`'s fault proxy; yield (api, proxied URL).

    Workers get the proxied URL (``Settings(partner_url=url)``), so a fault on proxy `name`
    cuts or slows the partner; the harness drives the knobs on ``api`` directly.

    >>> with partner_behind_proxy(stack) as (api, url):     # doctest: +SKIP
    ...     settings = Settings(partner_url=url)
    """
    with PartnerAPI() as api:
        endpoint = stack.add_proxy(name, f"127.0.0.1:{api.port}")
        yield api, endpoint.url


if __name__ == "__main__":
    raise SystemExit(main())
