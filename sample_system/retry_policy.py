"""When to retry a failed call and how long to wait: exponential backoff with full jitter and a cap.

Responsibility: the retry decision (which errors are worth retrying) and the countdown for
attempt n, ``min(cap, base * 2**n)``, with "equal jitter" when jitter is on: a uniform pick in
``[d/2, d]`` (float seconds so tests can use sub-second bases). Unlike Celery's full jitter
(``[0, d]``), the whole budget lasts at least half its nominal length, so a retry window is
guaranteed to outlast an outage shorter than that. A server's ``Retry-After`` (HTTP 429) is a lower bound.

Example:
    >>> import random
    >>> p = RetryPolicy(max_retries=5, backoff=1.0, backoff_max=600.0, jitter=False)
    >>> [p.countdown(n) for n in range(4)]
    [1.0, 2.0, 4.0, 8.0]
    >>> RetryPolicy(max_retries=5, backoff=1.0, backoff_max=3.0, jitter=False).countdown(10)
    3.0
    >>> 0.0 <= RetryPolicy(backoff=1.0, jitter=True).countdown(3, random.Random(7)) <= 8.0
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from sample_system.partner_client import FatalPartnerError, RetryablePartnerError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: `backoff` seconds doubled per retry, capped at `backoff_max`, with equal jitter."""

    max_retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 600.0
    jitter: bool = True

    def countdown(self, retries: int, rng: random.Random | None = None, *, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retries + 1`` (``retries`` done so far)."""
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        # 2**retries overflows floats for absurd counts; the cap makes the exact value moot.
        base = self.backoff_max if retries > 60 else min(self.backoff_max, self.backoff * (2 ** retries))
        if self.jitter:
            # "Equal jitter": half fixed, half random. Full jitter (uniform(0, base)) spreads
            # retries as well but has no floor, so a whole retry budget can burn out in a
            # fraction of a second and a short partner outage sends work to the DLQ by chance.
            base = (rng or random).uniform(base / 2.0, base)
        if retry_after is not None:
            base = max(base, min(retry_after, self.backoff_max))
        return round(base, 3)

    def exhausted(self, retries: int) -> bool:
        """True when ``retries`` retries have been spent (the next failure is final)."""
        return retries >= self.max_retries


def is_retryable(exc: BaseException) -> bool:
    """Whether `exc` is transient: partner 5xx/429/connection/timeouts, soft time limits, DB hiccups.

    Fatal errors (401/403, validation) are never retried: retrying cannot fix them and would
    only delay their arrival in the dead-letter queue.

    >>> is_retryable(RetryablePartnerError("503 from partner")), is_retryable(FatalPartnerError("401"))
    (True, False)
    """
    if isinstance(exc, FatalPartnerError):
        return False
    return isinstance(exc, RetryablePartnerError | SoftTimeLimitExceeded | OperationalError
                      | ConnectionError | TimeoutError)
