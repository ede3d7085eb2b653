"""Freezing a process group, and knowing that it is frozen.

`os.killpg(pgid, SIGSTOP)` returns as soon as the signal is queued; a process that is
running on the other core stops a moment later, and a multi-threaded server (the Erlang VM)
stops thread by thread. A pause fault that reports "frozen" before that moment lets the test
or checker that follows see a server that still answers. `freeze_group` waits until the
kernel shows every process of the group stopped (state ``T``), with a deadline, and says
which ones it saw stopped.

Example:
    >>> import subprocess
    >>> p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    >>> freeze_group(p.pid)["stopped"]
    True
    >>> thaw_group(p.pid); p.kill(); p.wait()
    -9
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

_STOPPED = ("T", "t")


def _stat_fields(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("ascii", "replace").rpartition(")")[2].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """The pids whose process group is `pgid` (from /proc; racy by nature, read it as a snapshot)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(f"/proc/{name}/stat")
            if fields and len(fields) > 2 and fields[2] == str(pgid):
                members.append(int(name))
    return members


def _not_stopped(pgid: int) -> list[int]:
    # Every thread must be stopped, not only the thread group leaders: a thread still in
    # `R` can still write to a socket.
    running = []
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
                if fields and fields[0] not in _STOPPED and fields[0] not in ("Z", "X"):
                    running.append(int(tid))
    return running


def freeze_group(pgid: int, *, timeout: float = 3.0) -> dict[str, Any]:
    """SIGSTOP process group `pgid`, then wait until all its threads are stopped.

    Returns what was done: ``{"pgid", "stopped": bool, "wait_s", "still_running": [tids]}``.
    A group that is already gone raises ProcessLookupError, as `os.killpg` does.
    """
    t0 = time.monotonic()
    os.killpg(pgid, signal.SIGSTOP)
    deadline = t0 + timeout
    running = _not_stopped(pgid)
    while running and time.monotonic() < deadline:
        time.sleep(0.01)
        running = _not_stopped(pgid)
    return {"pgid": pgid, "stopped": not running, "wait_s": round(time.monotonic() - t0, 3),
            "still_running": running[:10]}


def thaw_group(pgid: int) -> None:
    """SIGCONT process group `pgid`; a group that is gone is not an error (it was killed meanwhile)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)
