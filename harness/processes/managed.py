"""Spawning and reaping the servers of a local stack.

Responsibility: start a server as a child in its own process group, with its output in a
log file, wait for readiness with a deadline (a timeout names what was awaited, the last
probe error and the log tail), and make sure nothing it started survives `stop()`.

Example:
    >>> proc = ManagedProcess("sleeper", ["sleep", "30"], log_path=Path("/tmp/sleeper.log"))
    >>> proc.start().pid > 0
    True
    >>> proc.stop()
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.errors import StackStartTimeout
from harness.processes import reaper

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    # Belt and braces next to the reaper (harness.processes.reaper): if the harness is SIGKILLed, the
    # kernel kills the server too. It follows the spawning *thread*, hence only from the main
    # thread. Runs in the child after setuid, so it is not cleared by it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort only
        pass


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that there is none."""
    try:
        data = path.read_bytes()[-8192:].decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


class ManagedProcess:
    """One child process in its own process group, logged to a file, reaped on stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        group: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.group = group
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._popen.pid

    def start(self) -> ManagedProcess:
        if self.is_running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        in_main_thread = threading.current_thread() is threading.main_thread()
        # The reaper finds the child (and all it forks) by this token, whichever thread spawns it.
        env = reaper.child_env(self.env)
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                user=self.user,
                group=self.group,
                process_group=0,
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from exc
        finally:
            log.close()
        reaper.register_group(self._popen.pid)
        return self

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def signal_group(self, sig: int) -> None:
        if self._popen is None:
            return
        try:
            os.killpg(self._popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the child."""
        if self._popen is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self._popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel is in trouble
            return
        reaper.unregister_group(self._popen.pid)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Graceful stop with `sig`, then SIGKILL of the group after `timeout` seconds."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self.signal_group(sig)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (grandchildren) goes too.
        self.kill()

    def wait_ready(self, probe: Callable[[], object], *, timeout: float, what: str, hint: str = "",
                   max_interval: float = 0.25) -> None:
        """Poll `probe` until it returns without raising; raise StackStartTimeout with context.

        The pause between probes grows from 20 ms to `max_interval` (a cheap probe passes a
        small one, so readiness is seen within milliseconds).
        """
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        delay = min(0.02, max_interval)
        while time.monotonic() < deadline:
            if not self.is_running():
                raise StackStartTimeout(
                    f"{self.name} exited with code {self.returncode()} before it was ready ({what}).\n"
                    f"{hint}\n--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            try:
                probe()
                return
            except Exception as exc:  # noqa: BLE001 - any probe failure means "not yet"
                last = exc
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 1.5, max_interval)
        raise StackStartTimeout(
            f"{self.name} was not ready after {timeout:.0f} s: waited for {what}; last probe error: {last!r}.\n"
            f"{hint}\n--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
        )
