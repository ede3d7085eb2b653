"""`freeze_group` returns only once every thread of the group is stopped (a pause fault must not
report a frozen server that still answers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.processes.freeze import freeze_group, group_members, thaw_group

# Busy threads, so that a SIGSTOP lands while they run on the other core.
_SPIN = ("import threading\n"
         "def spin():\n    while True:\n        pass\n"
         "for _ in range(3):\n    threading.Thread(target=spin).start()\n")


def _states(pid: int) -> set[str]:
    return {(Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0])
            for t in (p.name for p in Path(f"/proc/{pid}/task").iterdir())}


def test_a_busy_multithreaded_group_is_wholly_stopped_when_freeze_returns() -> None:
    p = subprocess.Popen([sys.executable, "-c", _SPIN], start_new_session=True)
    try:
        for _ in range(5):
            done = freeze_group(p.pid)
            assert done["stopped"] is True and done["still_running"] == []
            assert _states(p.pid) == {"T"}
            thaw_group(p.pid)
        assert p.pid in group_members(p.pid)
    finally:
        p.kill()
        p.wait(timeout=10)
    thaw_group(p.pid)  # a group that is gone is not an error
