"""Run the built-in Toxiproxy server as a child process for the duration of a stack.

Responsibility: spawn `python -m harness.toxiproxy` on a free loopback port in its own process
group, wait until its API answers, and always stop and reap it (SIGTERM, then SIGKILL of the
group), removing its log file. Start-up failures raise StackStartTimeout with the log tail.

Example:
    with ToxiproxyProcess() as tp:
        client = ToxiproxyClient(tp.url)
        client.create_proxy("broker", upstream="127.0.0.1:5672")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import StackStartTimeout

from .client import ToxiproxyClient


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the server is retried if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ToxiproxyProcess:
    """The built-in server as a child process; a context manager. `.url` once started."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 15.0,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def url(self) -> str:
        if self.proc is None or self.port is None:
            raise RuntimeError("ToxiproxyProcess is not started: call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    def start(self) -> ToxiproxyProcess:
        if self.proc is not None:
            raise RuntimeError("ToxiproxyProcess already started; stop() it first")
        attempts = 1 if self.port is not None else 3
        for attempt in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            try:
                self._spawn(port)
                return self
            except StackStartTimeout:
                exited = self.proc is not None and self.proc.poll() is not None
                tail = self.log_tail()
                self.stop()
                if not exited or attempt == attempts - 1 or "address already in use" not in tail:
                    raise
                self.port = None if attempts > 1 else self.port
        return self  # pragma: no cover

    def _spawn(self, port: int) -> None:
        fd, name = tempfile.mkstemp(prefix="toxiproxy-", suffix=".log")
        self._log_path = Path(name)
        root = str(Path(__file__).resolve().parents[2])
        from harness.processes import reaper

        env = reaper.child_env(self.env)  # found and killed by the reaper if this owner is SIGKILLed
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "harness.toxiproxy", "-host", self.host, "-port", str(port),
               *self.extra_args]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        finally:
            os.close(fd)
        self.port = port
        client = ToxiproxyClient(self.url, timeout=2.0)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise StackStartTimeout(
                    f"built-in Toxiproxy exited with code {self.proc.returncode} before answering on "
                    f"{self.url}.\nCommand: {' '.join(cmd)}\nLog:\n{self.log_tail()}")
            try:
                client.wait_ready(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
                return
            except TimeoutError as e:
                if time.monotonic() >= deadline:
                    raise StackStartTimeout(
                        f"built-in Toxiproxy did not answer on {self.url} within {self.startup_timeout:.0f}s "
                        f"({e}).\nCommand: {' '.join(cmd)}\nLog:\n{self.log_tail()}") from None

    def stop(self) -> None:
        """Terminate the process group and reap it; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None:
                proc.wait(timeout=5.0)
        if self._log_path is not None:
            try:
                self._log_path.unlink()
            except OSError:
                pass
            self._log_path = None

    def __enter__(self) -> ToxiproxyProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
