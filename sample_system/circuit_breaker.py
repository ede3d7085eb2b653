"""A circuit breaker around the partner API: stop calling a partner that keeps failing.

Responsibility: the closed -> open -> half-open state machine. After `failure_threshold`
consecutive transient failures the breaker opens and refuses calls for `reset_timeout`
seconds (the task retries later without touching the partner); then one trial call is let
through (half-open): success closes the breaker, failure opens it again.

Scope: one breaker per worker *process* (each prefork child has its own), like Celery's
rate limits are per worker. The partner's request log shows the effect from outside: a burst
of failures, then silence for `reset_timeout` from that process, then a single trial.

Example:
    >>> clock = [0.0]
    >>> b = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=lambda: clock[0])
    >>> b.record_failure(); b.record_failure(); b.state
    'open'
    >>> b.allow()
    False
    >>> clock[0] = 11.0; b.allow(), b.state
    (True, 'half_open')
    >>> b.record_success(); b.state
    'closed'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe breaker; `allow()` before a call, then `record_success()` or `record_failure()`."""

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout < 0:
            raise ValueError(f"reset_timeout must be >= 0 seconds, got {reset_timeout}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through (0 when closed or due)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial at a time."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() - self._opened_at < self.reset_timeout:
                    return False
                self._state = "half_open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._trial_in_flight = False
            if self._state == "half_open":
                self._open()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._failures = 0
