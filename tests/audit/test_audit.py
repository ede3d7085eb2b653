"""The static audit over Celery app objects built here (no servers): risks, per-task refinement, confirm()."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from celery import Celery
from celery.app.defaults import DEFAULTS
from kombu import Exchange, Queue

from harness.audit import (
    CELERY_DEFAULTS,
    CONFIRMED,
    NOT_EXERCISED,
    REFUTED,
    Risk,
    audit_app,
    audit_conf,
    audit_exit_code,
    confirm,
    format_risks,
)

HARDENED: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "task_acks_on_failure_or_timeout": False,
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {"confirm_publish": True, "read_timeout": 45},
    "task_time_limit": 300,
    "task_soft_time_limit": 240,
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    "result_backend_always_retry": True,
}


def _app(broker: str = "amqp://127.0.0.1:5672//", backend: str | None = None, **conf: Any) -> Celery:
    app = Celery("audit-test", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(conf)

    @app.task(name="audit.work", shared=False)
    def work() -> None: ...

    return app


def _by_id(risks: list[Risk]) -> dict[str, Risk]:
    return {r.id: r for r in risks}


def test_the_fallback_defaults_are_celerys_own():
    # A plain dict given to audit_conf must read exactly as a fresh app.conf would.
    for key, value in CELERY_DEFAULTS.items():
        if key in DEFAULTS:
            assert DEFAULTS[key] == value or (value is math.inf and DEFAULTS[key] == float("inf")), key


def test_celery_defaults_predict_early_acks_prefetch_and_silent_publish_loss():
    risks = audit_app(_app())
    got = _by_id(risks)
    early = got["early_acks"]
    assert (early.mode, early.severity, early.predicts) == (3, "loss", ("lost",))
    assert "task_acks_late=False" in early.setting and "task_acks_late=True" in early.fix
    assert "audit.work" in early.tasks
    assert got["prefetch_multiplier"].mode == 9 and "worker_prefetch_multiplier=4" in got["prefetch_multiplier"].setting
    assert got["no_publisher_confirms"].mode == 11 and "confirm_publish" in got["no_publisher_confirms"].fix
    assert got["no_time_limit"].severity == "stall"
    # late-ack-only risks do not apply to an early-ack app
    assert not {"late_acks_without_reject", "long_tasks_not_cancelled", "acks_on_failure_or_timeout"} & set(got)
    assert audit_exit_code(risks) == 1
    # worst severity first
    assert [r.severity for r in risks] == sorted((r.severity for r in risks),
                                                 key=("loss", "duplicate", "stall", "info").index)


def test_a_hardened_app_has_no_loss_or_duplicate_risk():
    risks = audit_app(_app(backend="redis://127.0.0.1:6379/0", **HARDENED))
    assert [r for r in risks if r.severity in ("loss", "duplicate")] == []
    assert audit_exit_code(risks) == 0
    assert [r.id for r in risks] == ["poison_redelivery"]  # info only


@pytest.mark.parametrize(("variant", "risk", "mode"), [
    ({"task_reject_on_worker_lost": False}, "late_acks_without_reject", 3),
    ({"task_acks_on_failure_or_timeout": True}, "acks_on_failure_or_timeout", 4),
    ({"worker_cancel_long_running_tasks_on_connection_loss": False}, "long_tasks_not_cancelled", 8),
    ({"broker_transport_options": {}}, "no_publisher_confirms", 11),
    ({"result_backend_always_retry": False}, "backend_writes_not_retried", 17),
    ({"result_backend_max_retries": 10, "result_backend_max_sleep_between_retries_ms": 2000},
     "backend_retry_budget", 17),
    ({"worker_pool": "solo", "broker_heartbeat": 1}, "solo_pool_heartbeats", 20),
    ({"broker_heartbeat": 0}, "no_heartbeat", 1),
    ({"broker_transport_options": {"confirm_publish": True}}, "no_read_timeout", 1),
    ({"task_time_limit": None}, "no_time_limit", 7),
    ({"worker_prefetch_multiplier": 8}, "prefetch_multiplier", 9),
])
def test_each_weakened_setting_brings_its_risk(variant: dict[str, Any], risk: str, mode: int):
    before = _by_id(audit_app(_app(backend="redis://127.0.0.1:6379/0", **HARDENED)))
    after = _by_id(audit_app(_app(backend="redis://127.0.0.1:6379/0", **{**HARDENED, **variant})))
    assert risk not in before and risk in after
    assert after[risk].mode == mode
    assert after[risk].fix and after[risk].setting and after[risk].predicts


def test_backend_retry_budget_is_the_sum_of_celerys_capped_sleeps():
    conf = {**HARDENED, "result_backend": "redis://x", "result_backend_max_retries": 10,
            "result_backend_max_sleep_between_retries_ms": 2000}
    (r,) = [r for r in audit_conf(conf) if r.id == "backend_retry_budget"]
    # retries 1..10 sleep at most min(2000, 10 * 2**n) ms: 20+40+...+1280 + 3 * 2000 = 8540 ms
    assert "at most 8.5 s" in r.title
    unbounded = {**conf, "result_backend_max_retries": float("inf")}
    assert "backend_retry_budget" not in _by_id(audit_conf(unbounded))


def test_redis_visibility_timeout_shorter_than_a_task_time_limit():
    app = _app(broker="redis://127.0.0.1:6379/1",
               **{**HARDENED, "broker_transport_options": {"visibility_timeout": 60}})

    @app.task(name="audit.long", time_limit=3600, shared=False)
    def long() -> None: ...

    got = _by_id(audit_app(app))
    vt = got["visibility_timeout"]
    assert (vt.mode, vt.severity) == (6, "duplicate")
    assert vt.predicts == ("duplicate_execution/visibility_timeout",)
    assert "visibility_timeout=60" in vt.setting and "3600" in vt.setting and "audit.long" in vt.tasks
    assert "visibility_timeout" in vt.fix
    assert got["visibility_timeout_eta"].mode == 5 and got["visibility_timeout_eta"].severity == "info"
    assert got["redis_unacked_restore"].mode == 10
    # no confirm_publish on Redis: it is an AMQP option
    assert "no_publisher_confirms" not in got
    # a timeout above every limit removes it
    app.conf.broker_transport_options = {"visibility_timeout": 7200}
    assert "visibility_timeout" not in _by_id(audit_app(app))


def test_early_acks_on_redis_do_not_wait_for_the_visibility_timeout_mid_task():
    # The message is acked before the task runs: a long task cannot be redelivered by the timeout.
    got = _by_id(audit_conf({"broker_url": "redis://h/0", "task_time_limit": 3600,
                             "broker_transport_options": {"visibility_timeout": 60}}))
    assert "visibility_timeout" not in got and "visibility_timeout_eta" in got
    assert "early_acks" in got


def test_task_options_refine_the_app_settings():
    app = _app(**{**HARDENED, "task_acks_late": False})

    @app.task(name="audit.safe", acks_late=True, shared=False)
    def safe() -> None: ...

    got = _by_id(audit_app(app))
    # (other shared tasks, e.g. pytest-celery's, are registered in every app: test membership only)
    assert "audit.work" in got["early_acks"].tasks and "audit.safe" not in got["early_acks"].tasks
    assert "(tasks: audit.work" in got["early_acks"].setting and "audit.safe" not in got["early_acks"].setting
    # every task late-acked: no early-ack risk, whatever the app-wide default says
    app2 = _app(**{**HARDENED, "task_acks_late": False})
    for t in app2.tasks.values():
        if not t.name.startswith("celery."):
            t.acks_late = True
    assert "early_acks" not in _by_id(audit_app(app2))


def test_celery_internal_tasks_are_skipped():
    app = _app(**HARDENED)
    app.conf.task_acks_late = False
    got = _by_id(audit_app(app))
    assert all(not n.startswith("celery.") for n in got["early_acks"].tasks)


def test_quorum_queues_with_global_qos():
    q = Queue("work", Exchange("work"), "work", queue_arguments={"x-queue-type": "quorum"})
    app = _app(**{**HARDENED, "task_queues": [q], "worker_detect_quorum_queues": False})
    r = _by_id(audit_app(app))["quorum_global_qos"]
    assert r.mode == 12 and "work" in r.setting and "worker_detect_quorum_queues=True" in r.fix
    app.conf.worker_detect_quorum_queues = True
    assert "quorum_global_qos" not in _by_id(audit_app(app))
    by_default_type = {**HARDENED, "broker_url": "amqp://h//", "task_default_queue_type": "quorum",
                       "worker_detect_quorum_queues": False}
    assert "quorum_global_qos" in _by_id(audit_conf(by_default_type))


def test_risk_json_round_trip_and_plain_words():
    risks = audit_app(_app())
    assert [Risk.from_dict(json.loads(json.dumps(r.to_dict()))) for r in risks] == risks
    text = format_risks(risks, "demo:app")
    assert text.splitlines()[0] == "celery-chaos audit of demo:app"
    assert "[loss] mode 3 (early_acks):" in text and "fix:" in text
    with pytest.raises(ValueError, match="severity"):
        Risk("x", 1, "t", "s", (), "f", "fatal")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ confirm()

EARLY = Risk("early_acks", 3, "t", "s", ("lost",), "f", "loss", ("kill_worker_child", "kill_worker"))
VT = Risk("visibility_timeout", 6, "t", "s", ("duplicate_execution/visibility_timeout",), "f", "duplicate")


def _status(risk: Risk, observed: dict[str, int], exercised: set[str]) -> str:
    ((_r, status),) = confirm([risk], observed, exercised)
    return status


def test_confirm_confirmed_refuted_not_exercised():
    assert _status(EARLY, {"lost": 1}, {"kill_worker_child"}) == CONFIRMED
    assert _status(EARLY, {"lost": 0, "duplicate_effect": 2}, {"kill_worker"}) == REFUTED
    assert _status(EARLY, {}, {"broker_outage"}) == NOT_EXERCISED
    # a loss where no kill ran is another risk's doing: not attributed to early acks
    assert _status(EARLY, {"lost": 3}, {"broker_outage:blackhole"}) == NOT_EXERCISED


def test_confirm_a_risk_that_needs_no_fault_is_never_refuted():
    assert _status(VT, {"duplicate_execution/visibility_timeout": 1}, set()) == CONFIRMED
    assert _status(VT, {}, {"kill_worker", "reset_peer"}) == NOT_EXERCISED
    # a duplicate with another cause does not confirm it
    assert _status(VT, {"duplicate_execution": 1, "duplicate_execution/redelivery": 1}, set()) == NOT_EXERCISED


def test_confirm_keeps_the_order_of_the_risks():
    out = confirm([VT, EARLY], {"lost": 1}, ["kill_worker"])
    assert [(r.id, s) for r, s in out] == [("visibility_timeout", NOT_EXERCISED), ("early_acks", CONFIRMED)]


def test_dead_lettering_into_classic_queues_is_an_at_most_once_loss_and_quorum_fixes_it():
    from harness.audit import audit_app
    from sample_system.factory import make_app
    from sample_system.settings import Settings

    classic = {r.id: r for r in audit_app(make_app(Settings()))}
    risk = classic["dead_letters_at_most_once"]
    assert risk.severity == "loss" and "dlq_claimed_not_held" in risk.predicts
    assert "at-least-once" in risk.fix and "orders" in risk.setting
    assert "dead_letters_at_most_once" not in {r.id for r in audit_app(make_app(Settings(queue_type="quorum")))}
