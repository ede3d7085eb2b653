"""The containers stack: RabbitMQ, Redis and Toxiproxy as Docker containers (testcontainers).

Responsibility: start a broker, a result backend and a fault proxy as containers on a
private Docker network of their own, one proxy per client role published on 127.0.0.1,
hand out direct and per-role URLs exactly like the local stack, offer the container-only
faults (pause/unpause, docker kill + start keeping data), optionally run `celery worker`s in
containers, and remove every container, network and volume it made (found by its run label)
on exit, failure or interrupt.

Options (ContainerStackOptions; each also read from the environment when the stack is built):
    images            auto | official | local (CHAOS_IMAGES); auto = official image when present
                      or pullable, else the one `celery-chaos images build` made
    rabbitmq_image, redis_image, toxiproxy_image, python_image
                      explicit images (CHAOS_RABBITMQ_IMAGE, CHAOS_REDIS_IMAGE, CHAOS_TOXIPROXY_IMAGE,
                      CHAOS_PYTHON_IMAGE)
    broker            rabbitmq (default) or redis
    redis_aof         AOF with fsync always on Redis, so a killed backend keeps its results
    rabbitmq_management  enable the management plugin (the official image always has it)
    proxy_network     host (default; CHAOS_PROXY_NETWORK) or bridge. host: the Toxiproxy container
                      shares the host's network and listens on 127.0.0.1 itself, upstreams are the
                      servers' published ports, so proxies behave exactly as on the local stack (a
                      disabled proxy refuses connections, its ports are real sockets). bridge:
                      Toxiproxy on the stack's network, upstreams by container name, proxy ports
                      published on 127.0.0.1; Docker's userland proxy then accepts connections to
                      a disabled proxy and closes them (a reset, not a refusal)
    workers           host (default) or containers (CHAOS_WORKERS): where `harness.workers.worker_for(stack, spec)` runs workers
    startup_timeout, pull_timeout, spare_proxies

Why not pytest-celery's containers for the stack itself: its nodes are pytest fixtures built on
pytest_docker_tools (function scope, created by fixture resolution), publish ports on every
interface, and its worker image installs Celery from PyPI inside `docker build`, which an
air-gapped CI cannot do. The CLI (`celery-chaos stack up --provider containers`) needs a plain
object. `attach_to_celery_setup` goes the other way: it adds the harness's proxy and server
controls to an existing pytest-celery `celery_setup`.

Example:
    >>> with ContainerStack(images="local") as stack:                  # doctest: +SKIP
    ...     app = Celery(broker=stack.urls.url_for(Role.PRODUCER_BROKER))
    ...     stack.broker.pause(); stack.broker.unpause()
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.images.engine import (
    DockerUnavailable,
    docker_client,
    leftovers,
    owner_labels,
    remove_orphans,
    remove_run,
)
from harness.images.names import (
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_RUN,
    ImageMode,
    ImageOverrides,
    ResolvedImage,
    Service,
)
from harness.images.resolve import resolve_images
from harness.processes.managed import free_port
from harness.stack.base import ProxiedEndpoint, Role, StackLifecycle, StackURLs
from harness.toxiproxy.client import ToxiproxyClient

_PROXY_BASE_PORT = 20000  # container-side listen ports of the role proxies (bridge mode)
_TOXIPROXY_API = 8474


@dataclass(frozen=True, slots=True)
class ContainerStackOptions:
    """How to build the containers stack (see the module docstring for each option)."""

    images: str = "auto"
    rabbitmq_image: str | None = None
    redis_image: str | None = None
    toxiproxy_image: str | None = None
    python_image: str | None = None
    broker: Literal["rabbitmq", "redis"] = "rabbitmq"
    redis_aof: bool = False
    rabbitmq_management: bool = True
    proxy_network: Literal["bridge", "host"] = "host"
    workers: Literal["host", "containers"] = "host"
    startup_timeout: float = 120.0
    pull_timeout: float = 30.0
    spare_proxies: int = 6
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ImageMode.parse(self.images)
        if self.broker not in ("rabbitmq", "redis"):
            raise ConfigError(f"broker must be 'rabbitmq' or 'redis', not {self.broker!r}")
        if self.proxy_network not in ("bridge", "host"):
            raise ConfigError(f"proxy_network must be 'bridge' or 'host', not {self.proxy_network!r} "
                              "(CHAOS_PROXY_NETWORK)")
        if self.workers not in ("host", "containers"):
            raise ConfigError(f"workers must be 'host' or 'containers', not {self.workers!r} (CHAOS_WORKERS)")
        if self.startup_timeout <= 0 or self.pull_timeout <= 0:
            raise ConfigError("startup_timeout and pull_timeout must be positive seconds")
        if not 0 <= self.spare_proxies <= 64:
            raise ConfigError(f"spare_proxies must be 0..64, not {self.spare_proxies}")

    @property
    def image_mode(self) -> ImageMode:
        return ImageMode.parse(self.images)

    @property
    def overrides(self) -> ImageOverrides:
        return ImageOverrides(self.rabbitmq_image, self.redis_image, self.toxiproxy_image, self.python_image)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ContainerStackOptions:
        """Options from keyword arguments, with the environment filling what was not given.

        Example:
            >>> ContainerStackOptions.from_env({"CHAOS_IMAGES": "local"}).images
            'local'
            >>> ContainerStackOptions.from_env({}, image="redis")
            Traceback (most recent call last):
            ...
            harness.errors.ConfigError: unknown containers stack option(s) ['image']; known: ...
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"unknown containers stack option(s) {unknown}; known: {sorted(known)}")
        kw = {k: v for k, v in given.items() if v is not None}
        from_env = {"images": env.get("CHAOS_IMAGES"), "proxy_network": env.get("CHAOS_PROXY_NETWORK"),
                    "workers": env.get("CHAOS_WORKERS"),
                    **{f"{s.value}_image": env.get(s.env_var) for s in Service}}
        for k, v in from_env.items():
            if v and k not in kw:
                kw[k] = v
        return cls(**kw)


# -- readiness -------------------------------------------------------------------------------------

def _logs_tail(container: Any, lines: int = 25) -> str:
    try:
        return str(container.logs(tail=lines).decode("utf-8", "replace"))
    except Exception as exc:  # noqa: BLE001
        return f"(no logs: {exc})"


def _wait_ready(name: str, container: Any, probe: Callable[[], object], *, timeout: float, what: str,
                hint: str) -> None:
    """Poll `probe` until it passes; StackStartTimeout with status, last error, logs and a hint."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        container.reload()
        if container.status in ("exited", "dead"):
            raise StackStartTimeout(
                f"container {container.name} ({name}) exited before it was ready ({what}); exit code "
                f"{container.attrs.get('State', {}).get('ExitCode')}.\n{hint}\n--- last log lines ---\n"
                f"{_logs_tail(container)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise StackStartTimeout(
        f"container {container.name} ({name}) was not ready after {timeout:.0f} s: waited for {what}; "
        f"status {container.status}; last probe error: {last!r}.\n{hint}\n--- last log lines ---\n"
        f"{_logs_tail(container)}")


def _amqp_probe(host: str, user: str, password: str) -> Callable[[int], None]:
    def probe(port: int) -> None:
        import amqp  # py-amqp ships with kombu

        conn = amqp.Connection(host=f"{host}:{port}", userid=user, password=password, virtual_host="/",
                               connect_timeout=2.0)
        try:
            conn.connect()
        finally:
            conn.collect()
    return probe


def _redis_probe(host: str, password: str | None) -> Callable[[int], None]:
    def probe(port: int) -> None:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.settimeout(2.0)
            s.sendall((f"AUTH {password}\r\n" if password else "").encode() + b"PING\r\n")
            buf = b""
            while b"PONG" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    raise ConnectionError(f"redis closed the connection: {buf!r}")
                if b"-ERR" in chunk or b"-LOADING" in chunk:
                    raise ConnectionError(chunk.decode("utf-8", "replace"))
                buf += chunk
    return probe


# -- one server in a container ---------------------------------------------------------------------

class ContainerServer:
    """The broker or the backend in a container. Implements harness.stack.base.ServerControl.

    kill/start is `docker kill` (SIGKILL) then `docker start` of the same container: its own
    file system keeps the data, its published host port stays the same (chosen at creation).
    pause/unpause freezes the processes (cgroup freezer): TCP connections stay open and
    silent, which no process-level fault can do.

    Example:
        >>> stack.broker.pause(); stack.broker.is_paused()             # doctest: +SKIP
        True
    """

    def __init__(self, name: str, container: Callable[[], Any], probe: Callable[[int], None], *,
                 container_port: int, network_host: str, startup_timeout: float, what: str, hint: str,
                 host_port: int | None = None) -> None:
        self.name = name
        self._get = container  # returns the docker SDK container (testcontainers or pytest-celery owns it)
        self._probe = probe
        self._host_port = host_port
        self.container_port = container_port
        self.network_host = network_host  # how other containers on the network reach it
        self.startup_timeout = startup_timeout
        self._what = what
        self._hint = hint

    @property
    def container(self) -> Any:
        """The docker SDK container object."""
        return self._get()

    @property
    def host_port(self) -> int:
        """The port published on 127.0.0.1 (looked up when the container did not fix it at creation)."""
        if self._host_port is not None:
            return self._host_port
        c = self.container
        c.reload()
        bindings = (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{self.container_port}/tcp") or []
        if not bindings:
            raise HarnessError(f"container {c.name} publishes no host port for {self.container_port}/tcp")
        return int(bindings[0]["HostPort"])

    @property
    def container_name(self) -> str:
        return str(self.container.name)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.host_port}"

    def _status(self) -> str:
        c = self.container
        c.reload()
        return str(c.status)

    def is_running(self) -> bool:
        return self._status() == "running"

    def is_paused(self) -> bool:
        return self._status() == "paused"

    def await_ready(self) -> None:
        _wait_ready(self.name, self.container, lambda: self._probe(self.host_port), timeout=self.startup_timeout,
                    what=self._what, hint=self._hint)

    def kill(self) -> None:
        """SIGKILL the server (docker kill); the container and its data stay for start()."""
        c = self.container
        if self._status() == "paused":
            c.unpause()
        if self._status() in ("running", "restarting"):
            c.kill()
        self._wait_status({"exited", "dead", "created"}, 30.0)

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 30 s): RabbitMQ and Redis shut down cleanly."""
        c = self.container
        if self._status() == "paused":
            c.unpause()
        c.stop(timeout=30)
        self._wait_status({"exited", "dead", "created"}, 40.0)

    def start(self) -> ContainerServer:
        """Start the same container again (same port, credentials, data) and wait until it answers."""
        status = self._status()
        if status == "paused":
            self.container.unpause()
        elif status != "running":
            self.container.start()
        self.await_ready()
        return self

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze every process of the server (docker pause): connections hang, nothing is refused."""
        if self._status() != "paused":
            self.container.pause()

    def unpause(self) -> None:
        if self._status() == "paused":
            self.container.unpause()

    @property
    def pids(self) -> list[int]:
        """Host pid of the container's init while it runs (for leak checks)."""
        c = self.container
        c.reload()
        pid = int(c.attrs.get("State", {}).get("Pid") or 0)
        return [pid] if pid > 0 else []

    def logs(self, lines: int = 50) -> str:
        return _logs_tail(self.container, lines)

    def _wait_status(self, wanted: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._status() in wanted:
                return
            time.sleep(0.05)
        raise HarnessError(f"container {self.container_name} ({self.name}) did not reach {sorted(wanted)} within "
                           f"{timeout:.0f} s; it is {self._status()}")


class ContainerRabbitMQ(ContainerServer):
    """The RabbitMQ broker in a container; `ctl` runs rabbitmqctl inside it (memory alarms and the like)."""

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """Run `rabbitmqctl ARGS…` in the broker container; HarnessError with its output on failure.

        Example: ``stack.broker.ctl("set_vm_memory_high_watermark", "0.000001")`` raises a memory alarm.
        """
        import threading

        result: list[Any] = []

        def run() -> None:
            try:
                # HOME: where the Erlang cookie is, in the official image and in chaos/rabbitmq:local.
                result.append(self.container.exec_run(["rabbitmqctl", *args],
                                                      environment={"HOME": "/var/lib/rabbitmq"}))
            except Exception as exc:  # noqa: BLE001 - reported below
                result.append(exc)

        worker = threading.Thread(target=run, name="rabbitmqctl", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive() or not result:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} did not answer within {timeout:.0f} s")
        if isinstance(result[0], Exception):
            raise HarnessError(f"rabbitmqctl {' '.join(args)} could not run in {self.container_name}: {result[0]}")
        code, output = result[0]
        out = (output or b"").decode("utf-8", "replace")
        if code != 0:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} failed with code {code}: {out.strip()[-800:]}")
        return out


def _with_hostport(url: str, host: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    _hostport, _, path = tail.partition("/")
    return f"{scheme}://{creds + '@' if creds else ''}{host}:{port}/{path}"


def _ryuk_off() -> None:
    # testcontainers' reaper (Ryuk) is a container pulled from a registry, which air-gapped CI
    # cannot do; this stack removes exactly what it made by label, so it does not need one.
    # The user's explicit TESTCONTAINERS_RYUK_DISABLED still wins.
    from testcontainers.core.config import testcontainers_config

    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True


class ContainerStack(StackLifecycle):
    """Broker + result backend + Toxiproxy as containers. Implements harness.stack.base.Stack.

    Build it with keyword options (ContainerStackOptions fields) or an options object;
    `open_stack("containers", **options)` does the former.
    """

    provider = "containers"

    def __init__(self, options: ContainerStackOptions | None = None, **given: Any) -> None:
        if options is not None and given:
            raise ConfigError(f"pass either options= or keyword options, not both (got {sorted(given)})")
        self.options = options or ContainerStackOptions.from_env(**given)
        self.run_id = secrets.token_hex(4)
        self._exit = ExitStack()
        self._client: Any = None
        self._network: Any = None
        self._own_network = True
        self._broker: ContainerServer | None = None
        self._backend: ContainerServer | None = None
        self._toxiproxy_tc: Any = None
        self.toxiproxy: ToxiproxyClient | None = None
        self._relay: ToxiproxyClient | None = None
        self.images: dict[Service, ResolvedImage] = {}
        self._urls: StackURLs | None = None
        self._extra: dict[str, ProxiedEndpoint] = {}
        self._proxy_ports: dict[int, int] = {}   # container port -> host port (bridge mode)
        self._free_proxy_ports: list[int] = []
        self._credentials: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ContainerStack:
        """Start the containers in parallel, wait for each, create the per-role proxies."""
        if self._urls is not None:
            raise HarnessError("this ContainerStack is already started; build a new one for a second stack")
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["stack"] = time.monotonic() - t0
        return self

    def _start(self) -> None:
        o = self.options
        self._client = docker_client()
        self._exit.callback(self._client.close)
        # Registered first, so it runs last: whatever a half-done start left behind goes too.
        self._exit.callback(self._remove_everything)
        _ryuk_off()
        remove_orphans(self._client)
        t0 = time.monotonic()
        wanted = [Service.RABBITMQ if o.broker == "rabbitmq" else Service.REDIS, Service.REDIS, Service.TOXIPROXY]
        self.images = resolve_images(dict.fromkeys(wanted), mode=o.image_mode, overrides=o.overrides,
                                     pull_timeout=o.pull_timeout, client=self._client)
        self.timings["images"] = time.monotonic() - t0
        from testcontainers.core.network import Network

        net = Network(docker_network_kw={"labels": self._labels("network")})
        net.name = f"chaos-{self.run_id}"
        self._network = net.create()
        t1 = time.monotonic()
        if o.broker == "rabbitmq":
            self._broker = self._rabbitmq()
        else:
            self._broker = self._redis("broker", aof=True)
        self._backend = self._redis("backend", aof=o.redis_aof)
        self._start_toxiproxy()
        self.timings["toxiproxy"] = time.monotonic() - t1
        self._backend.await_ready()
        self.timings["backend"] = time.monotonic() - t1
        self._broker.await_ready()
        self.timings["broker"] = time.monotonic() - t1
        self._urls = self._make_urls()

    def _labels(self, role: str) -> dict[str, str]:
        return {**self.options.labels, LABEL_PROJECT: "stack", LABEL_RUN: self.run_id, LABEL_ROLE: role,
                **owner_labels()}

    def _container(self, role: str, image: str, *, alias: str, ports: Mapping[int, int], env: Mapping[str, str],
                   command: list[str] | None = None, network_mode_host: bool = False, **kwargs: Any) -> Any:
        """Create and start one labelled container (testcontainers), ports published on 127.0.0.1 only."""
        from testcontainers.core.container import DockerContainer

        tc = DockerContainer(image, env=dict(env), name=f"chaos-{self.run_id}-{role}")
        if command is not None:
            tc.with_command(command)
        if network_mode_host:
            kwargs["network_mode"] = "host"
        else:
            tc.with_network(self._network).with_network_aliases(alias)
            for cport, hport in ports.items():
                tc.ports[f"{cport}/tcp"] = ("127.0.0.1", hport)  # type: ignore[assignment]
        tc.with_kwargs(labels=self._labels(role), init=True, **kwargs)
        self._exit.callback(self._stop_tc, tc)
        return tc.start()

    @staticmethod
    def _stop_tc(tc: Any) -> None:
        try:
            c = tc.get_wrapped_container()
            c.reload()
            if c.status == "paused":
                c.unpause()
            tc.stop()
        except Exception:  # noqa: BLE001 - _remove_everything catches what this misses
            pass

    def _rabbitmq(self) -> ContainerServer:
        user, password = f"chaos-{self.run_id}", secrets.token_urlsafe(18)
        port = free_port()
        env = {"RABBITMQ_DEFAULT_USER": user, "RABBITMQ_DEFAULT_PASS": password,
               "CHAOS_RABBITMQ_MANAGEMENT": "1" if self.options.rabbitmq_management else "0"}
        tc = self._container("broker", self.images[Service.RABBITMQ].image, alias="broker", ports={5672: port},
                             env=env, hostname="broker")
        self._credentials["broker"] = f"amqp://{user}:{password}@127.0.0.1:{port}//"
        return ContainerRabbitMQ(
            "rabbitmq", tc.get_wrapped_container, _amqp_probe("127.0.0.1", user, password), host_port=port,
            container_port=5672, network_host="broker", startup_timeout=self.options.startup_timeout, what=f"an AMQP connection to 127.0.0.1:{port} as {user}",
            hint=(f"Check the image {self.images[Service.RABBITMQ].image} starts RabbitMQ on 5672 and honours "
                  "RABBITMQ_DEFAULT_USER/PASS (the official image and chaos/rabbitmq:local do)."))

    def _redis(self, role: str, *, aof: bool) -> ContainerServer:
        password = secrets.token_urlsafe(18)
        port = free_port()
        cmd = ["redis-server", "--requirepass", password, "--bind", "0.0.0.0", "--protected-mode", "no",
               "--dir", "/data", "--save", ""]
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        image = self.images[Service.REDIS].image
        tc = self._container(role, image, alias=role, ports={6379: port}, env={}, command=cmd)
        self._credentials[role] = f"redis://:{password}@127.0.0.1:{port}/0"
        return ContainerServer(
            f"redis-{role}", tc.get_wrapped_container, _redis_probe("127.0.0.1", password), host_port=port,
            container_port=6379, network_host=role, startup_timeout=self.options.startup_timeout, what=f"AUTH + PING answered on 127.0.0.1:{port}",
            hint=f"Check the image {image} runs redis-server with the command line it is given.")

    def _start_toxiproxy(self) -> None:
        o = self.options
        image = self.images[Service.TOXIPROXY].image
        if o.proxy_network == "host":
            api = free_port()
            tc = self._container("toxiproxy", image, alias="toxiproxy", ports={}, env={},
                                 command=["-host=127.0.0.1", f"-port={api}"], network_mode_host=True)
        else:
            api = free_port()
            count = len(Role) + o.spare_proxies
            self._proxy_ports = {_PROXY_BASE_PORT + i: free_port() for i in range(count)}
            self._free_proxy_ports = sorted(self._proxy_ports)
            tc = self._container("toxiproxy", image, alias="toxiproxy",
                                 ports={_TOXIPROXY_API: api, **self._proxy_ports}, env={},
                                 command=["-host=0.0.0.0", f"-port={_TOXIPROXY_API}"])
        self._toxiproxy_tc = tc
        client = ToxiproxyClient(f"http://127.0.0.1:{api}")
        _wait_ready("toxiproxy", tc.get_wrapped_container(), client.version, timeout=o.startup_timeout,
                    what=f"GET /version on 127.0.0.1:{api}",
                    hint=f"Check the image {image} takes toxiproxy-server's flags (-host, -port).")
        self.toxiproxy = client

    def _make_proxy(self, name: str, role: Role, upstream: str, template: str | None) -> ProxiedEndpoint:
        assert self.toxiproxy is not None
        if self.options.proxy_network == "host":
            info = self.toxiproxy.create_proxy(name, upstream, listen="127.0.0.1:0")
            host_port = info.listen_port
        else:
            if not self._free_proxy_ports:
                raise ConfigError(
                    f"no spare proxy port left for {name!r}: the stack publishes {len(self._proxy_ports)} proxy "
                    "ports; build it with a larger spare_proxies=")
            cport = self._free_proxy_ports.pop(0)
            self.toxiproxy.create_proxy(name, upstream, listen=f"0.0.0.0:{cport}")
            host_port = self._proxy_ports[cport]
        url = _with_hostport(template, "127.0.0.1", host_port) if template else f"http://127.0.0.1:{host_port}"
        return ProxiedEndpoint(role=role, proxy_name=name, listen_host="127.0.0.1", listen_port=host_port,
                               upstream=upstream, url=url)

    def _upstream(self, server: ContainerServer) -> str:
        if self.options.proxy_network == "host":
            return server.address
        return f"{server.network_host}:{server.container_port}"

    def _make_urls(self) -> StackURLs:
        assert self._broker is not None and self._backend is not None and self.toxiproxy is not None
        broker_url, backend_url = self._credentials["broker"], self._credentials["backend"]
        proxied = {}
        for role in Role:
            server = self._broker if role.is_broker else self._backend
            template = broker_url if role.is_broker else backend_url
            proxied[role] = self._make_proxy(role.proxy_name, role, self._upstream(server), template)
        return StackURLs(broker_url=broker_url, backend_url=backend_url, toxiproxy_url=self.toxiproxy.url,
                         proxied=proxied, broker_kind="amqp" if self.options.broker == "rabbitmq" else "redis")

    def add_proxy(self, name: str, upstream: str) -> ProxiedEndpoint:
        """Route another dependency (a partner API, a database) through the fault proxy.

        `upstream` is host:port: a container on the stack's network by name, or a service on the
        host's loopback (127.0.0.1:PORT). In bridge mode the Toxiproxy container cannot reach the
        host's loopback, so a plain relay (the same Toxiproxy image, on the host's network, no
        toxics) listens on the stack network's gateway address and forwards to it; faults still
        act on this proxy, in the stack's Toxiproxy.

        Adding a name again re-points that proxy at the new upstream (same port).

        Example: ``ep = stack.add_proxy("partner_api", "127.0.0.1:8099")`` then call ``ep.url``.
        """
        if self._urls is None:
            raise HarnessError("the stack is not started: call start() first")
        if name in {r.proxy_name for r in Role}:
            raise ConfigError(f"{name!r} is the name of a role's proxy; pick another name for an extra proxy")
        host = upstream.rsplit(":", 1)[0].strip("[]")
        if self.options.proxy_network == "bridge" and host in ("127.0.0.1", "localhost", "::1"):
            upstream = self._relay_to_host(name, upstream)
        existing = self._extra.get(name)
        if existing is not None:
            # Re-pointing a dependency (a fresh partner API for the next scenario) keeps the proxy's
            # name and port, so faults and clients configured with it keep working (as LocalStack).
            assert self.toxiproxy is not None
            if existing.upstream != upstream:
                self.toxiproxy.update_proxy(existing.proxy_name, upstream=upstream)
            ep = ProxiedEndpoint(existing.role, existing.proxy_name, existing.listen_host, existing.listen_port,
                                 upstream, existing.url)
        else:
            ep = self._make_proxy(name, Role.PRODUCER_BROKER, upstream, None)
        self._extra[name] = ep
        return ep

    def _relay_to_host(self, name: str, upstream: str) -> str:
        """An upstream the Toxiproxy container can dial that reaches `upstream` on the host's loopback."""
        if self._relay is None:
            image = self.images[Service.TOXIPROXY].image
            api = free_port()
            tc = self._container("hostrelay", image, alias="hostrelay", ports={}, env={},
                                 command=["-host=127.0.0.1", f"-port={api}"], network_mode_host=True)
            client = ToxiproxyClient(f"http://127.0.0.1:{api}")
            _wait_ready("host relay", tc.get_wrapped_container(), client.version,
                        timeout=self.options.startup_timeout, what=f"GET /version on 127.0.0.1:{api}",
                        hint=f"Check the image {image} takes toxiproxy-server's flags (-host, -port).")
            self._relay = client
        net = self._client.networks.get(self.network_name)
        gateway = str(net.attrs["IPAM"]["Config"][0]["Gateway"])
        target = f"127.0.0.1:{upstream.rsplit(':', 1)[1]}"
        relay_name = f"relay-{name}"
        current = self._relay.proxies().get(relay_name)
        if current is not None:
            if current.upstream != target:
                self._relay.update_proxy(relay_name, upstream=target)
            return f"{gateway}:{current.listen_port}"
        info = self._relay.create_proxy(relay_name, target, listen=f"{gateway}:0")
        return f"{gateway}:{info.listen_port}"

    def stop(self) -> None:
        """Remove every container, network and volume this stack made; safe to call twice."""
        self._exit.close()
        self._urls = None

    def _remove_everything(self) -> None:
        if self._network is not None and self._own_network:
            try:
                self._network.remove()
            except Exception:  # noqa: BLE001 - remove_run tries again by label
                pass
        client = self._client
        if client is None:
            return
        problems = remove_run(client, self.run_id)
        left = leftovers(client, self.run_id)
        if problems or any(left.values()):
            print(f"celery-chaos: could not remove all of run {self.run_id}: {problems or left}; remove them with "
                  f"`docker rm -f $(docker ps -aq --filter label={LABEL_RUN}={self.run_id})`", file=sys.stderr)

    # -- accessors ------------------------------------------------------------------------------
    @property
    def broker(self) -> ContainerServer | None:
        return self._broker

    @property
    def backend(self) -> ContainerServer | None:
        return self._backend

    @property
    def network_name(self) -> str:
        return str(self._network.name) if self._network is not None else f"chaos-{self.run_id}"

    def containers(self) -> list[str]:
        """Names of this run's containers (workers included) that exist now."""
        if self._client is None:
            return []
        return leftovers(self._client, self.run_id)["containers"]

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this run that still exist (all empty after stop())."""
        client = docker_client(timeout=30)
        try:
            return leftovers(client, self.run_id)
        finally:
            client.close()

    def temp_dirs(self) -> list[str]:
        """This stack makes no host directories (its data lives in the containers)."""
        return []

    def pids(self) -> list[int]:
        """Host pids of the containers' init processes while they run (for leak checks)."""
        out: list[int] = []
        for server in (self._broker, self._backend):
            if server is not None:
                try:
                    out.extend(server.pids)
                except Exception:  # noqa: BLE001 - a removed container has no pid
                    pass
        if self._toxiproxy_tc is not None:
            try:
                c = self._toxiproxy_tc.get_wrapped_container()
                c.reload()
                pid = int(c.attrs.get("State", {}).get("Pid") or 0)
                if pid:
                    out.append(pid)
            except Exception:  # noqa: BLE001
                pass
        return out

    def describe(self) -> dict[str, object]:
        """URLs plus what ran where: images (and why each was chosen), containers, run id."""
        return {**self.urls.to_json(), "provider": self.provider, "run_id": self.run_id,
                "network": self.network_name, "containers": self.containers(),
                "images": {s.value: {"image": r.image, "source": r.source, "note": r.note}
                           for s, r in self.images.items()}}

    # -- workers in containers ------------------------------------------------------------------
    def worker_urls(self) -> tuple[str, str]:
        """The worker-role broker and backend URLs as a worker *container* sees them."""
        urls = self.urls
        if self.options.proxy_network == "host":
            return urls.url_for(Role.WORKER_BROKER), urls.url_for(Role.WORKER_BACKEND)
        by_host = {cport: hport for cport, hport in self._proxy_ports.items()}
        inside = {hport: cport for cport, hport in by_host.items()}
        wb, wk = urls.proxied[Role.WORKER_BROKER], urls.proxied[Role.WORKER_BACKEND]
        host = f"chaos-{self.run_id}-toxiproxy"  # the container's name resolves on its network
        return (_with_hostport(wb.url, host, inside[wb.listen_port]),
                _with_hostport(wk.url, host, inside[wk.listen_port]))

    def container_worker(self, spec: Any, *, project_dir: str | Path | None = None) -> ContainerWorker:
        """A `celery worker` for `spec` (harness.workers.WorkerSpec) in a container on this stack's network.

        Example:
            >>> with stack.container_worker(WorkerSpec(app="harness.smoke:app")) as w:   # doctest: +SKIP
            ...     w.kill(); w.start()
        """
        return ContainerWorker(self, spec, project_dir=project_dir)


class ContainerWorker:
    """A real `celery worker` in a container: the host's venv and project mounted read-only.

    The image is Debian's python3 (chaos/python:local) or the official python:3.11-slim; both
    are Python 3.11 like the harness's venv, so its packages (Celery included) run unchanged,
    without installing anything inside the container (air-gapped CI cannot).

    Example:
        >>> with stack.container_worker(WorkerSpec(app="harness.smoke:app")) as w:       # doctest: +SKIP
        ...     w.is_running()
        True
    """

    def __init__(self, stack: ContainerStack, spec: Any, *, project_dir: str | Path | None = None) -> None:
        if sys.version_info[:2] != (3, 11):
            raise ConfigError(f"workers in containers mount this venv, built for Python "
                              f"{sys.version_info[0]}.{sys.version_info[1]}; the worker images run Python 3.11. "
                              "Run the harness on Python 3.11, or run workers on the host (workers='host')")
        self.stack = stack
        self.spec = spec
        self.project_dir = Path(project_dir or os.getcwd()).resolve()
        self.site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
        self.hostname = spec.hostname or f"chaos-{secrets.token_hex(3)}@container"
        self._tc: Any = None

    def _argv(self) -> list[str]:
        s = self.spec
        argv = ["python3", "-m", "harness.workers.launch", "-A", s.app, "worker", "-P", s.pool,
                "-c", str(s.concurrency), "-n", self.hostname, "--loglevel", s.loglevel,
                "--without-gossip", "--without-mingle"]
        if s.queues:
            argv += ["-Q", ",".join(s.queues)]
        return argv + list(s.extra_args)

    def start(self) -> ContainerWorker:
        """Start the container and wait until the worker answers a ping through the proxies."""
        import json

        from testcontainers.core.container import DockerContainer

        st = self.stack
        if self._tc is None:
            resolved = resolve_images([Service.PYTHON], mode=st.options.image_mode, overrides=st.options.overrides,
                                      pull_timeout=st.options.pull_timeout)[Service.PYTHON]
            broker, backend = st.worker_urls()
            paths = [*self.spec.pythonpath, "/app", "/venv-site"]
            env = {"CHAOS_BROKER_URL": broker, "CHAOS_BACKEND_URL": backend, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1", **self.spec.env}
            if self.spec.settings:
                env["CHAOS_WORKER_SETTINGS"] = json.dumps(self.spec.settings)
            name = f"chaos-{st.run_id}-worker-{secrets.token_hex(3)}"
            tc = DockerContainer(resolved.image, env=env, name=name).with_command(self._argv())
            tc.with_volume_mapping(str(self.project_dir), "/app", "ro")
            tc.with_volume_mapping(str(self.site_packages), "/venv-site", "ro")
            kwargs: dict[str, Any] = {"labels": st._labels("worker"), "init": True, "working_dir": "/app"}
            if st.options.proxy_network == "host":
                kwargs["network_mode"] = "host"
            else:
                tc.with_network(st._network)
            tc.with_kwargs(**kwargs)
            self._tc = tc.start()
        else:
            self.container.start()
        self.wait_ready()
        return self

    @property
    def container(self) -> Any:
        if self._tc is None:
            raise HarnessError("the worker container is not started")
        return self._tc.get_wrapped_container()

    def wait_ready(self, timeout: float | None = None) -> None:
        from celery import Celery

        urls = self.stack.urls
        app = Celery("chaos-ping", broker=urls.url_for(Role.PRODUCER_BROKER))
        app.conf.broker_connection_retry_on_startup = True

        def probe() -> None:
            replies = app.control.ping(destination=[self.hostname], timeout=1.0)
            if not replies:
                raise HarnessError(f"no ping reply from {self.hostname}")

        try:
            _wait_ready(f"worker {self.hostname}", self.container, probe,
                        timeout=timeout or self.stack.options.startup_timeout,
                        what=f"a ping reply from {self.hostname}",
                        hint=("Check the app imports inside the container: the project is mounted at /app and "
                              f"the venv's site-packages ({self.site_packages}) at /venv-site."))
        finally:
            app.close()

    def is_running(self) -> bool:
        c = self.container
        c.reload()
        return c.status == "running"

    def kill(self) -> None:
        """SIGKILL the whole worker (every process in the container)."""
        c = self.container
        c.reload()
        if c.status == "running":
            c.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM), then remove the container."""
        if self._tc is None:
            return
        try:
            self.container.stop(timeout=int(timeout))
        except Exception:  # noqa: BLE001 - removal below forces it
            pass
        try:
            self._tc.stop()
        finally:
            self._tc = None

    def restart(self) -> ContainerWorker:
        self.container.restart(timeout=10)
        self.wait_ready()
        return self

    def logs(self, lines: int = 50) -> str:
        return _logs_tail(self.container, lines)

    def __enter__(self) -> ContainerWorker:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _JoinedNetwork:
    """Someone else's Docker network, joined by name (testcontainers needs only `.name`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def remove(self) -> None:  # never ours to remove
        pass


class CelerySetupStack(ContainerStack):
    """The harness's fault proxy and server controls added to a pytest-celery `celery_setup`.

    Starts one Toxiproxy container on the setup's Docker network, one proxy per client role
    in front of its broker and backend containers (upstreams by container name), and wraps
    those containers as ServerControls (kill/start/pause, as for the containers stack).
    pytest-celery keeps owning its containers; stop() removes only the proxy container.

    The producer side is the test's own app: `apply_to(celery_setup.app)` points it at the
    producer-role proxies. pytest-celery's worker containers were given their URLs when they
    were created; `worker_urls()` gives the worker-role proxy URLs to put in their config
    (for example by overriding the `default_worker_env` fixture).

    Example:
        >>> def test_broker_outage(celery_setup):                                  # doctest: +SKIP
        ...     with attach_to_celery_setup(celery_setup) as stack:
        ...         stack.apply_to(celery_setup.app)
        ...         stack.broker.kill(); stack.broker.start()
    """

    provider = "pytest-celery"

    def __init__(self, celery_setup: Any, options: ContainerStackOptions | None = None, **given: Any) -> None:
        super().__init__(options, **given)
        # The proxy joins the setup's network and dials its containers by alias: their published
        # ports may change when pytest-celery (or a fault) restarts them.
        self.options = replace(self.options, proxy_network="bridge")
        if getattr(celery_setup, "broker", None) is None:
            raise ConfigError("this celery_setup has no broker node; the harness needs at least a broker to proxy")
        self._setup = celery_setup

    def _start(self) -> None:
        o = self.options
        self._client = docker_client()
        self._exit.callback(self._client.close)
        self._exit.callback(self._remove_everything)
        _ryuk_off()
        self.images = resolve_images([Service.TOXIPROXY], mode=o.image_mode, overrides=o.overrides,
                                     pull_timeout=o.pull_timeout, client=self._client)
        broker = self._node_server(self._setup.broker, "broker")
        networks = list(broker.container.attrs.get("NetworkSettings", {}).get("Networks", {}))
        if not networks:
            raise ConfigError(f"the broker container {broker.container_name} is on no Docker network")
        self._network, self._own_network = _JoinedNetwork(networks[0]), False
        self._broker = broker
        backend = getattr(self._setup, "backend", None)
        self._backend = self._node_server(backend, "backend") if backend is not None else None
        self._start_toxiproxy()
        self._urls = self._make_urls()

    def _node_server(self, node: Any, role: str) -> ContainerServer:
        """A ServerControl over a pytest-celery node's container (RabbitMQ or Redis, told by its port)."""
        from urllib.parse import urlsplit

        wrapper = node.container
        sdk = wrapper._container  # pytest_docker_tools keeps the docker SDK container here
        sdk.reload()
        ports = sdk.attrs.get("NetworkSettings", {}).get("Ports") or {}
        url = str(node.config().get("host_url") or "")
        parts = urlsplit(url)
        if "5672/tcp" in ports:
            probe = _amqp_probe("127.0.0.1", parts.username or "guest", parts.password or "guest")
            cport, what = 5672, "an AMQP connection"
        elif "6379/tcp" in ports:
            probe, cport, what = _redis_probe("127.0.0.1", parts.password), 6379, "PING answered"
        else:
            raise ConfigError(f"the {role} container {sdk.name} publishes neither 5672 (RabbitMQ) nor 6379 (Redis): "
                              f"{sorted(ports)}; the harness can proxy only those")

        def current() -> Any:
            return wrapper._container

        # pytest_docker_tools' containers are reachable on their network by alias (the short id),
        # not always by name.
        nets = list((sdk.attrs.get("NetworkSettings", {}).get("Networks") or {}).values())
        aliases = [a for n in nets for a in (n.get("Aliases") or [])]
        cls = ContainerRabbitMQ if cport == 5672 else ContainerServer
        server = cls(f"{role} ({sdk.name})", current, probe, container_port=cport,
                                 network_host=str(aliases[0] if aliases else sdk.name), startup_timeout=self.options.startup_timeout,
                                 what=what, hint="pytest-celery owns this container; see its logs.")
        self._credentials[role] = _with_hostport(url, "127.0.0.1", server.host_port) if url else ""
        return server

    def _make_urls(self) -> StackURLs:
        assert self._broker is not None and self.toxiproxy is not None
        broker_url, backend_url = self._credentials["broker"], self._credentials.get("backend", "")
        proxied = {}
        for role in Role:
            server = self._broker if role.is_broker else self._backend
            if server is None:
                continue
            template = broker_url if role.is_broker else backend_url
            proxied[role] = self._make_proxy(role.proxy_name, role, self._upstream(server), template)
        kind = "amqp" if broker_url.startswith(("amqp", "pyamqp")) else "redis"
        return StackURLs(broker_url=broker_url, backend_url=backend_url, toxiproxy_url=self.toxiproxy.url,
                         proxied=proxied, broker_kind=kind)

    def apply_to(self, app: Any) -> None:
        """Point a host-side Celery app (the producer) at the producer-role proxies."""
        urls = self.urls
        update = {"broker_url": urls.url_for(Role.PRODUCER_BROKER)}
        if Role.PRODUCER_BACKEND in urls.proxied:
            update["result_backend"] = urls.url_for(Role.PRODUCER_BACKEND)
        app.close()  # drop pooled connections to the old URLs
        app.conf.update(update)
        try:
            del app._local.backend  # Celery caches the result backend per thread
        except AttributeError:
            pass


def attach_to_celery_setup(celery_setup: Any, **options: Any) -> CelerySetupStack:
    """Add the harness's proxy and server controls to a pytest-celery `celery_setup` (not started yet).

    Use it as a context manager inside the test; options are ContainerStackOptions fields
    (toxiproxy_image, images, startup_timeout, spare_proxies, ...).
    """
    return CelerySetupStack(celery_setup, **options)


__all__ = ["CelerySetupStack", "ContainerRabbitMQ", "attach_to_celery_setup", "ContainerServer", "ContainerStack", "ContainerStackOptions", "ContainerWorker", "DockerUnavailable"]
