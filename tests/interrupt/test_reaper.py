"""The reaper: children started from any thread, and their temp dirs, die with a SIGKILLed owner.

No servers: the owner is a small Python process that starts `sleep` through ManagedProcess from
a non-main thread (where PR_SET_PDEATHSIG does not help) and one in its own session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

OWNER = r"""
import subprocess, sys, threading, time
from pathlib import Path
from harness.processes.managed import ManagedProcess
from harness.processes import reaper
d = reaper.make_temp_dir("chaos-reaper-test-")
procs = []
def spawn():
    procs.append(ManagedProcess("s", ["sleep", "300"], log_path=Path(d) / "s.log").start())
t = threading.Thread(target=spawn); t.start(); t.join()
# A child in its own session, like the partner API: only the token in its environment finds it.
own = subprocess.Popen(["sleep", "301"], start_new_session=True, env=reaper.child_env(None))
print(d, procs[0].pid, own.pid, reaper._owner.watchdog.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_gone(pids: list[int], dirs: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids) and not any(os.path.exists(d) for d in dirs):
            return
        time.sleep(0.05)
    pytest.fail(f"left after {timeout:.0f} s: pids {[p for p in pids if _alive(p)]}, "
                f"dirs {[d for d in dirs if os.path.exists(d)]}")


def _start_owner(tmp_path: Path) -> tuple[subprocess.Popen[str], str, list[int], int]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHAOS_STATE_DIR": str(tmp_path / "state")}
    env.pop("CHAOS_REAPER_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", OWNER], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    d, child, own, watchdog = proc.stdout.readline().split()
    return proc, d, [int(child), int(own)], int(watchdog)


def test_sigkilled_owner_takes_every_child_and_temp_dir_with_it(tmp_path: Path) -> None:
    proc, d, pids, watchdog = _start_owner(tmp_path)
    try:
        assert all(_alive(p) for p in pids) and os.path.isdir(d)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        _wait_gone([*pids, watchdog], [d])
        assert list((tmp_path / "state").glob("owner-*.json")) == []
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_stack_down_orphans_reaps_what_a_dead_owner_and_its_watchdog_left(tmp_path: Path) -> None:
    proc, d, pids, watchdog = _start_owner(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not any(d in m.read_text() for m in (tmp_path / "state").glob("owner-*.json")):
            assert time.monotonic() < deadline, "the watchdog never wrote its marker file"
            time.sleep(0.02)
        # Both die at once (a `kill -9` of the whole session): only the marker file is left.
        os.kill(watchdog, signal.SIGKILL)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        markers = list((tmp_path / "state").glob("owner-*.json"))
        assert len(markers) == 1 and d in json.loads(markers[0].read_text())["dirs"]
        assert all(_alive(p) for p in pids) and os.path.isdir(d)
        env = {**os.environ, "PYTHONPATH": str(REPO), "CHAOS_STATE_DIR": str(tmp_path / "state")}
        r = subprocess.run([sys.executable, "-m", "harness", "stack", "down", "--orphans"], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "reaped 2 process(es) and 1 temp dir(s)" in r.stdout, r.stdout
        _wait_gone(pids, [d], timeout=5)
        assert list((tmp_path / "state").glob("owner-*.json")) == []
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
