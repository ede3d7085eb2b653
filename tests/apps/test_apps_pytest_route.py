"""The pytest route as the shop's team uses it: their own test file (``shop_django/chaos_tests``),
the plugin's ``chaos_stack``, the certification's scenarios on ``shared_task`` tasks, run by a
fresh pytest process from the project directory. It must pass, and print no traceback at
teardown (an ``AsyncResult.__del__`` reconnecting to a stopped server would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

SHOP = Path(__file__).resolve().parent / "shop_django"


def test_the_shops_own_chaos_tests_pass_cleanly() -> None:
    env = {**os.environ, "SHOP_HARDENED": "1", "PYTHONPATH": os.pathsep.join(
        [".", str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "chaos_tests", "-q", "-p", "no:cacheprovider",
                        "-k", "baseline"], cwd=SHOP, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "1 passed" in out, out[-3000:]
    for noise in ("Traceback", "Exception ignored", "Error in atexit"):
        assert noise not in out, out[-3000:]
