"""Helpers for the Locust tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.history import F, OpType, read_history
from harness.load.soak import queue_depths
from sample_system.topology import SERVICE_QUEUES

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = str(REPO / "loadtests" / "locustfile.py")


@dataclass(frozen=True)
class Queues:
    broker_url: str

    def depth(self) -> int:
        """Ready messages over every queue of the sample system (no worker consumes them here)."""
        return sum(v or 0 for v in queue_depths(self.broker_url, SERVICE_QUEUES).values())

    def wait_depth(self, expected: int, timeout: float = 10.0) -> int:
        """The depth once it equals `expected`, or the last one seen after `timeout`."""
        deadline = time.monotonic() + timeout
        seen = self.depth()
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = self.depth()
        return seen


def publishes(history_dir: Path, type_: OpType = OpType.OK) -> list[Any]:
    """The publish ops of `type_` in a history directory."""
    return [op for op in read_history(history_dir) if op.f == F.PUBLISH and op.type is type_]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: Any, timeout: float = 15.0) -> list[int]:
    """Pids still alive after `timeout` (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
