"""A bare `celery worker` subprocess for the benchmarks: start it, wait for its ping, stop and reap it.

Benchmarks start workers without the harness's instrumentation (that is what some of them
measure), so they do not use `harness.workers`. Each worker runs in its own session so `stop`
can kill its pool children with the group.

Example::

    w = BenchWorker(["-A", "sample_system", "-Q", "default"], env=os.environ.copy(), cwd=REPO, log=Path("w.log"))
    try:
        w.wait_ready(app)
    finally:
        w.stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any


class BenchWorker:
    """`python -m <module> <celery args> worker ...` with gossip, mingle and heartbeats off."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path, module: str = "celery") -> None:
        self.log = log
        cmd = [sys.executable, "-m", module, *args, "-n", f"bench-{uuid.uuid4().hex[:6]}@127.0.0.1", "-l", "WARNING",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, app: Any, timeout: float = 90.0) -> None:
        """Return once the worker answers a ping; raise with its log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(Exception):
                if app.control.ping(timeout=0.5):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the whole group if it lingers; always reaped."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._fh.close()
