"""A private Redis server for one stack: free port, per-run password, loopback only.

Responsibility: start, stop, kill and restart one `redis-server`, with no persistence by
default and AOF (fsync always) when a durability scenario asks for it.

Example:
    >>> with LocalRedis() as redis:                 # doctest: +SKIP
    ...     redis.url                               # redis://:PASSWORD@127.0.0.1:PORT/0
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
from pathlib import Path

from harness.errors import ConfigError
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, free_port

_INSTALL_HINT = "install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or point CHAOS_REDIS_SERVER at it"


def find_redis_server(explicit: str | None = None, path: str | None = None) -> str:
    """Path of `redis-server`, or a ConfigError naming the fix."""
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"redis-server not found at {explicit!r}: {_INSTALL_HINT}")
        return explicit
    found = shutil.which("redis-server", path=path)
    if found is None:
        raise ConfigError(f"redis-server is not on PATH: {_INSTALL_HINT}")
    return found


class LocalRedis:
    """One private redis-server. Implements harness.stack.base.ServerControl."""

    def __init__(self, *, name: str = "redis", aof: bool = False, startup_timeout: float = 30.0,
                 server_bin: str | None = None) -> None:
        self.name = name
        self.aof = aof
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        # Find the binary first: a missing redis-server must leave no empty temp dir behind.
        binary = find_redis_server(server_bin or os.environ.get("CHAOS_REDIS_SERVER"))
        self.base_dir = Path(reaper.make_temp_dir(f"chaos-{name}-"))
        conf = self.base_dir / "redis.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {self.password}\n"
            f"dir {self.base_dir}\ndaemonize no\nsave \"\"\n"
            + ("appendonly yes\nappendfsync always\n" if aof else "appendonly no\n")
        )
        conf.chmod(0o600)
        self._proc = ManagedProcess(name, [binary, str(conf)], log_path=self.base_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc.is_running() else []

    def is_running(self) -> bool:
        return self._proc.is_running()

    def _probe(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
            s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
            buf = b""
            while b"PONG" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    raise ConnectionError(f"redis closed the connection: {buf!r}")
                if b"-ERR" in chunk or b"-LOADING" in chunk:
                    raise ConnectionError(chunk.decode("utf-8", "replace"))
                buf += chunk

    def start(self) -> LocalRedis:
        """Start (same port and password as before) and wait until AUTH + PING answers."""
        self.spawn()
        self.await_ready()
        return self

    def spawn(self) -> None:
        self._proc.start()

    def await_ready(self) -> None:
        self._proc.wait_ready(self._probe, timeout=self.startup_timeout,
                              what=f"AUTH + PING answered on {self.address}",
                              hint="Check that the port is free and redis-server can write its dir.")

    def kill(self) -> None:
        self._proc.kill()

    def stop(self) -> None:
        # SIGTERM: redis flushes AOF (when on) and exits cleanly.
        self._proc.stop(timeout=15, sig=signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self._proc.stop(timeout=5)
        reaper.remove_dir(self.base_dir)

    def __enter__(self) -> LocalRedis:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
