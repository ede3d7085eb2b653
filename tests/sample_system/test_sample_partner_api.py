"""The partner API server and client over real loopback HTTP: knobs, log, idempotency, classification, breaker."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from harness.errors import ConfigError
from sample_system.circuit_breaker import CircuitBreaker
from sample_system.partner_api import PartnerAPI
from sample_system.partner_client import (
    CircuitOpenError,
    FatalPartnerError,
    PartnerClient,
    RetryablePartnerError,
)


@pytest.fixture(scope="module")
def server() -> Iterator[PartnerAPI]:
    with PartnerAPI() as api:
        yield api


@pytest.fixture()
def api(server: PartnerAPI) -> Iterator[PartnerAPI]:
    server.reset()
    yield server
    server.reset()


def charge(client: PartnerClient, key: str, card: str = "tok_visa") -> dict:
    return client.charge(idempotency_key=key, amount=1000, currency="EUR", card=card, order_id=key)


def test_charges_are_idempotent_by_key(api: PartnerAPI) -> None:
    c = PartnerClient(api.url, timeout=5)
    first, second = charge(c, "k1"), charge(c, "k1")
    assert first["id"] == second["id"] and second["replayed"] is True
    assert charge(c, "k2")["id"] != first["id"]
    assert [e["status"] for e in api.log()] == [201, 200, 201]


@pytest.mark.parametrize(("card", "error", "status"), [
    ("tok_declined", FatalPartnerError, 402),
    ("tok_revoked", FatalPartnerError, 401),
    ("tok_unavailable", RetryablePartnerError, 503),
])
def test_test_cards_answer_as_documented(api: PartnerAPI, card: str, error: type, status: int) -> None:
    with pytest.raises(error) as info:
        charge(PartnerClient(api.url, timeout=5), "k", card)
    assert info.value.status == status


def test_validation_failures_are_fatal(api: PartnerAPI) -> None:
    c = PartnerClient(api.url, timeout=5)
    with pytest.raises(FatalPartnerError, match="422"):
        c.post("/v1/charges", {"amount": 5}, idempotency_key="bad")


def test_fail_next_fails_exactly_that_many_calls(api: PartnerAPI) -> None:
    api.control(fail_next=2, status_codes=[502])
    c = PartnerClient(api.url, timeout=5)
    for _ in range(2):
        with pytest.raises(RetryablePartnerError, match="502"):
            charge(c, "f")
    assert charge(c, "f")["status"] == "succeeded"
    assert [(e["status"], e["injected"]) for e in api.log()] == [(502, True), (502, True), (201, False)]


def test_429_carries_retry_after(api: PartnerAPI) -> None:
    api.control(fail_next=1, status_codes=[429])
    with pytest.raises(RetryablePartnerError) as info:
        charge(PartnerClient(api.url, timeout=5), "r")
    assert (info.value.status, info.value.retry_after) == (429, 1.0)


def test_failure_rate_is_repeatable_with_a_seed(api: PartnerAPI) -> None:
    def run(prefix: str) -> list[int]:
        api.control(failure_rate=0.5, status_codes=[500, 503], seed=7)
        api.clear_log()
        c = PartnerClient(api.url, timeout=5)
        for i in range(30):
            try:
                c.send_message(idempotency_key=f"{prefix}{i}", channel="email", to="u", body="b")
            except RetryablePartnerError:
                pass
        return [e["status"] for e in api.log()]
    first = run("a")
    assert first == run("b")
    assert 5 < sum(s >= 500 for s in first) < 25


def test_latency_and_timeouts_are_retryable(api: PartnerAPI) -> None:
    api.control(stall_next=1, stall_ms=1500)
    c = PartnerClient(api.url, timeout=0.3)
    with pytest.raises(RetryablePartnerError, match="unreachable"):
        charge(c, "slow")
    assert charge(c, "fast")["status"] == "succeeded"


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryablePartnerError, match="unreachable"):
        charge(PartnerClient(f"http://127.0.0.1:{port}", timeout=1), "x")


def test_request_log_records_tracing_headers_and_pages(api: PartnerAPI) -> None:
    c = PartnerClient(api.url, timeout=5)
    c.charge(idempotency_key="t", amount=1, currency="EUR", card="tok_visa", order_id="o",
             headers={"X-Task-Id": "task-1", "X-Attempt": "3", "X-Worker-Pid": "42"})
    charge(c, "u")
    log = api.log()
    assert (log[0]["task_id"], log[0]["attempt"], log[0]["pid"], log[0]["path"]) == ("task-1", 3, 42, "/v1/charges")
    assert log[0]["mono_ns"] < log[1]["mono_ns"]
    assert [e["idempotency_key"] for e in api.log(since=log[0]["seq"])] == ["u"]


@pytest.mark.parametrize("knobs", [{"failure_rate": 2}, {"status_codes": [200]}, {"latency_ms": [5, 1]},
                                   {"fail_next": -1}, {"colour": "red"}])
def test_bad_knobs_are_refused_with_the_fix(api: PartnerAPI, knobs: dict) -> None:
    before = api.knobs()
    with pytest.raises(ConfigError, match=next(iter(knobs))):
        api.control(**knobs)
    assert api.knobs() == before, "a refused /_control changes nothing"


def test_control_endpoints_are_never_faulted(api: PartnerAPI) -> None:
    api.control(failure_rate=1.0)
    with urllib.request.urlopen(api.url + "/_control", timeout=5) as resp:
        assert json.loads(resp.read())["failure_rate"] == 1.0
    assert api.healthy()


def test_breaker_stops_calling_a_failing_partner_then_tries_once(api: PartnerAPI) -> None:
    clock = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=30, clock=lambda: clock[0])
    c = PartnerClient(api.url, timeout=5, breaker=breaker)
    api.control(failure_rate=1.0, status_codes=[503])
    for _ in range(3):
        with pytest.raises(RetryablePartnerError):
            charge(c, "b")
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            charge(c, "b")
    assert len(api.log()) == 3, "an open breaker must not reach the partner"
    api.control(failure_rate=0.0)
    clock[0] = 31.0
    assert charge(c, "b")["status"] == "succeeded"
    assert breaker.state == "closed" and len(api.log()) == 4


def test_fatal_answers_do_not_trip_the_breaker(api: PartnerAPI) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30)
    c = PartnerClient(api.url, timeout=5, breaker=breaker)
    for _ in range(4):
        with pytest.raises(FatalPartnerError):
            charge(c, "d", "tok_declined")
    assert breaker.state == "closed"


def test_the_server_process_is_reaped_on_exit() -> None:
    with PartnerAPI() as api:
        pid = api.proc.pid if api.proc else -1
        assert api.healthy()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sigterm_stops_the_server_cleanly() -> None:
    api = PartnerAPI().start()
    try:
        assert api.proc is not None
        os.killpg(api.proc.pid, signal.SIGTERM)
        assert api.proc.wait(timeout=5) == 0
    finally:
        api.stop()
