"""certify's claim and app options: bad values end before any server starts, exit 2, one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def certify(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "certify", "--report", str(tmp_path / "r"), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize(("args", "says"), [
    (("--claim", "sometimes"), "--claim at-least-once"),
    (("--claim", "effects=twice"), "--claim"),
    (("--app", "no_such_module_anywhere:app"), "no_such_module_anywhere"),
    (("--app", "harness.errors:ConfigError"), "not a Celery app"),
])
def test_bad_claim_or_app_is_exit_2_with_one_line_and_no_stack(tmp_path: Path, args: tuple[str, ...],
                                                                says: str) -> None:
    proc = certify(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "r" / "report.json").exists()
