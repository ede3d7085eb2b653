"""One server of the containers stack (the broker or the backend) in a container, and readiness.

Responsibility: `ContainerServer` (a harness.stack.base.ServerControl over a docker SDK
container: kill/start keeping data, stop, pause/unpause), `ContainerRabbitMQ` (plus
``rabbitmqctl`` inside it, the scenario's policies, and a configuration refused at boot as one
line), what a broker image's RabbitMQ knows (`image_schema`), files put into a container before
it starts (`files_tar`), and the readiness helpers every container of the harness uses
(`wait_ready`, `logs_tail`, the AMQP and Redis probes).

Example:
    >>> with_hostport("amqp://u:p@broker:5672//", "127.0.0.1", 20001)
    'amqp://u:p@127.0.0.1:20001//'
"""

from __future__ import annotations

import io
import socket
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.stack.rabbitmq_config import (
    CORE_APPS,
    RabbitMQSchema,
    RabbitMQSettings,
    apply_policies,
    boot_error,
)

__all__ = ["ContainerRabbitMQ", "ContainerServer", "amqp_probe", "files_tar", "image_schema", "logs_tail",
           "redis_probe", "wait_ready", "with_hostport"]


# -- readiness -------------------------------------------------------------------------------------

def logs_tail(container: Any, lines: int = 25) -> str:
    try:
        return str(container.logs(tail=lines).decode("utf-8", "replace"))
    except Exception as exc:  # noqa: BLE001
        return f"(no logs: {exc})"


def wait_ready(name: str, container: Any, probe: Callable[[], object], *, timeout: float, what: str,
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
                f"{logs_tail(container)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise StackStartTimeout(
        f"container {container.name} ({name}) was not ready after {timeout:.0f} s: waited for {what}; "
        f"status {container.status}; last probe error: {last!r}.\n{hint}\n--- last log lines ---\n"
        f"{logs_tail(container)}")


def amqp_probe(host: str, user: str, password: str) -> Callable[[int], None]:
    def probe(port: int) -> None:
        import amqp  # py-amqp ships with kombu

        conn = amqp.Connection(host=f"{host}:{port}", userid=user, password=password, virtual_host="/",
                               connect_timeout=2.0)
        try:
            conn.connect()
        finally:
            conn.collect()
    return probe


def redis_probe(host: str, password: str | None) -> Callable[[int], None]:
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
        wait_ready(self.name, self.container, lambda: self._probe(self.host_port), timeout=self.startup_timeout,
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
        return logs_tail(self.container, lines)

    def _wait_status(self, wanted: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._status() in wanted:
                return
            time.sleep(0.05)
        raise HarnessError(f"container {self.container_name} ({self.name}) did not reach {sorted(wanted)} within "
                           f"{timeout:.0f} s; it is {self._status()}")


class ContainerRabbitMQ(ContainerServer):
    """The RabbitMQ broker in a container; `ctl` runs rabbitmqctl inside it (memory alarms and the like).

    With `settings` (the scenario's `RabbitMQSettings`, whose files the stack put in the container
    before it started): a configuration RabbitMQ refuses at boot is one ConfigError line, and the
    policies are set once the broker first answers (they live in its database, which a kill and
    start keeps).
    """

    def __init__(self, *args: Any, settings: RabbitMQSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings or RabbitMQSettings()
        self._policies_applied = False

    def await_ready(self) -> None:
        try:
            super().await_ready()
        except StackStartTimeout:
            reason = self.boot_error()
            if reason is None:
                raise
            raise ConfigError(f"RabbitMQ refused its configuration: {reason}: fix or remove that setting "
                              f"({self.settings.summary()})") from None
        if self.settings.policies and not self._policies_applied:
            apply_policies(self.settings.policies, self.ctl)
            self._policies_applied = True

    def boot_error(self) -> str | None:
        """Why RabbitMQ refused its configuration, as one line, when the container has exited; else None."""
        c = self.container
        c.reload()
        if c.status not in ("exited", "dead"):
            return None
        return boot_error(logs_tail(c, 400))

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


def with_hostport(url: str, host: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    _hostport, _, path = tail.partition("/")
    return f"{scheme}://{creds + '@' if creds else ''}{host}:{port}/{path}"


# -- files of a container before it starts ------------------------------------------------------------

def files_tar(files: Mapping[str, str]) -> bytes:
    """A tar of `files` (path from ``/`` -> text; mode 0644, root's), for ``put_archive("/", ...)``.

    Example:
        >>> import io, tarfile
        >>> tarfile.open(fileobj=io.BytesIO(files_tar({"etc/a/b.conf": "x = 1\\n"}))).getnames()
        ['etc/a/b.conf']
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the engine's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


#: Where a RabbitMQ image keeps its plugins (the official image; Debian's package, as in
#: chaos/rabbitmq:local): the first that exists is read.
RABBITMQ_PLUGIN_DIRS = ("/opt/rabbitmq/plugins", "/usr/lib/rabbitmq/lib")
_schemas: dict[tuple[str, bool], RabbitMQSchema] = {}


def image_schema(container: Any, *, management: bool) -> RabbitMQSchema:
    """What the RabbitMQ of `container`'s image knows (`RabbitMQSchema`), read from its files.

    The container need not run (the stack reads it between create and start). Read once per
    image and process (about 25 MB of plugin files stream through; the schemas are kept). An
    image laid out otherwise gives an empty schema: RabbitMQ then checks the settings at boot.
    """
    import docker.errors

    key = (str(container.attrs.get("Image") or container.image.id), management)
    if key in _schemas:
        return _schemas[key]
    roots = CORE_APPS + (("rabbitmq_management",) if management else ())
    schema = RabbitMQSchema()
    for path in RABBITMQ_PLUGIN_DIRS:
        try:
            stream, _stat = container.get_archive(path)
        except docker.errors.NotFound:
            continue
        schema = RabbitMQSchema.from_tar(io.BufferedReader(_Chunks(stream), 1 << 20), roots)
        if schema.schemas:
            break
    _schemas[key] = schema
    return schema

