"""The HTTP client tasks use to call the partner API, sorting every failure into retryable or fatal.

Responsibility: one POST with a deadline, an ``Idempotency-Key`` and tracing headers
(``X-Task-Id``, ``X-Attempt``), classified the way the retry policy needs it:

* retryable (`RetryablePartnerError`): connection refused/reset, timeouts, 5xx, 408, 429
  (with the server's ``Retry-After``), an open circuit breaker (`CircuitOpenError`);
* fatal (`FatalPartnerError`): every other 4xx - 400/422 validation, 401/403 auth, 402
  declined - because repeating the same request cannot change the answer.

Only transient *partner* failures (connection, timeout, 5xx) count toward the circuit
breaker; a 4xx or 429 shows the partner is up.

Example:
    >>> classify_status(503), classify_status(429), classify_status(403), classify_status(201)
    ('retryable', 'retryable', 'fatal', 'ok')
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any, Literal

from sample_system.circuit_breaker import CircuitBreaker

Outcome = Literal["ok", "retryable", "fatal"]
_RETRYABLE_4XX = {408, 429}


class PartnerError(Exception):
    """A failed partner call; `status` is the HTTP status when there was a response."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        # Only the message goes into args: Celery's JSON result backend rebuilds exceptions
        # from args, so extra constructor arguments would not survive the round trip.
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryablePartnerError(PartnerError):
    """Transient: retry with backoff."""


class CircuitOpenError(RetryablePartnerError):
    """The breaker is open: the call was not even attempted."""


class FatalPartnerError(PartnerError):
    """Permanent: do not retry; the task goes to the dead-letter queue."""


def classify_status(status: int) -> Outcome:
    """Map an HTTP status to ok / retryable / fatal (see the module docstring)."""
    if 200 <= status < 300:
        return "ok"
    if status >= 500 or status in _RETRYABLE_4XX:
        return "retryable"
    return "fatal"


class PartnerClient:
    """Calls the partner API with a timeout and a circuit breaker.

    >>> PartnerClient("http://127.0.0.1:1", timeout=0.5).base_url
    'http://127.0.0.1:1'
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, breaker: CircuitBreaker | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"partner base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.breaker = breaker

    def charge(self, *, idempotency_key: str, amount: int, currency: str, card: str, order_id: str,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Charge `amount` (minor units) to `card`; the partner de-duplicates by idempotency key."""
        return self.post("/v1/charges", {"amount": amount, "currency": currency, "card": card, "order": order_id},
                         idempotency_key=idempotency_key, headers=headers)

    def send_message(self, *, idempotency_key: str, channel: str, to: str, body: str,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Deliver a notification on `channel` (email, sms, push, ...)."""
        return self.post("/v1/messages", {"channel": channel, "to": to, "body": body},
                         idempotency_key=idempotency_key, headers=headers)

    def post(self, path: str, payload: dict[str, Any], *, idempotency_key: str,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST JSON to `path`; return the decoded JSON body or raise a classified PartnerError."""
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise CircuitOpenError(
                f"circuit breaker open for {self.base_url}: not calling {path} for another "
                f"{breaker.retry_after():.1f}s", retry_after=breaker.retry_after())
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status = resp.status
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            raw = exc.read() if exc.fp is not None else b""
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            self._settle(status)
            detail = raw.decode(errors="replace")[:200]
            if classify_status(status) == "retryable":
                raise RetryablePartnerError(f"partner {path} answered {status}: {detail}", status, retry_after) from None
            raise FatalPartnerError(f"partner {path} answered {status} (not retried): {detail}", status) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            if breaker is not None:
                breaker.record_failure()
            reason = getattr(exc, "reason", exc)
            raise RetryablePartnerError(f"partner {path} unreachable: {type(reason).__name__}: {reason}") from None
        self._settle(status)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            # A truncated 2xx body (connection cut mid-response) is transient, not a partner bug.
            raise RetryablePartnerError(f"partner {path} answered {status} with a body that is not JSON") from None
        return body if isinstance(body, dict) else {"result": body}

    def _settle(self, status: int) -> None:
        if self.breaker is None:
            return
        if status >= 500:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
