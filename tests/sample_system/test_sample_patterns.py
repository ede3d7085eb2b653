"""Every pattern of the sample system on the real stack with real worker processes and no faults.

One worker (prefork, 2 children) for the module; each test uses fresh unit keys, so tests only
look at their own effects, partner calls and dead letters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sample_testkit import (
    REPO,
    Partner,
    SampleWorker,
    prepared_workload,
    running_worker,
    stack_settings,
    wait_until,
)

from harness.workload import DLQEntry, EffectRecord, Unit, validate_units
from sample_system import Settings
from sample_system.effects import EffectStore
from sample_system.partner_api import PartnerControl
from sample_system.services.events import subscriber_task_id
from sample_system.services.notifications import delivery_task_id
from sample_system.services.scans import assets_for, pages_oncall
from sample_system.topology import SERVICE_QUEUES
from sample_system.workload import SampleWorkload

MAX_RETRIES = 2
BACKOFF = 0.2
RATE_PER_S = 5


@dataclass
class Env:
    settings: Settings
    app: Any
    worker: SampleWorker
    workload: SampleWorkload
    store: EffectStore


@pytest.fixture(scope="module")
def env(chaos_stack: Any, partner: Partner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("patterns")
    settings = stack_settings(
        chaos_stack, partner, tmp,
        max_retries=MAX_RETRIES, retry_backoff=BACKOFF, retry_backoff_max=2.0, retry_jitter=False,
        rate_limit=f"{RATE_PER_S}/s", soft_time_limit=5, time_limit=10, partner_timeout=8,
        # The breaker has its own tests; here it must not open across tests that fail the partner on purpose.
        breaker_failure_threshold=1000, scan_assets=4,
    )
    workload = prepared_workload(settings)
    with running_worker(settings, tmp) as (app, worker):
        yield Env(settings, app, worker, workload, workload.store)


# ---------------------------------------------------------------------------------------------- helpers
def unit_of(env: Env, kind: str, run_id: str | None = None) -> Unit:
    run_id = run_id or uuid.uuid4().hex[:10]
    return next(u for u in env.workload.units(1, run_id) if u.kind == kind)


def effects_of(env: Env, key: str) -> list[EffectRecord]:
    return env.store.effects_by_key([key]).get(key, [])


def wait_effects(env: Env, unit: Unit, timeout: float = 30.0) -> dict[str, list[EffectRecord]]:
    """Wait until every expected effect of `unit` is stored; return them by idempotency key."""
    def probe() -> dict[str, list[EffectRecord]] | None:
        by_key: dict[str, list[EffectRecord]] = {}
        for r in effects_of(env, unit.key):
            by_key.setdefault(r.idempotency_key, []).append(r)
        return by_key if set(unit.effects) <= set(by_key) else None
    return wait_until(probe, timeout=timeout, what=f"effects {unit.effects} of {unit.key}")


def assert_exactly_once(by_key: dict[str, list[EffectRecord]], expected: tuple[str, ...]) -> None:
    assert set(by_key) == set(expected), f"unexpected effects {set(by_key) ^ set(expected)}"
    for ik, records in by_key.items():
        assert len(records) == 1, f"{ik} stored {len(records)} times"
        assert records[0].duplicate_writes == 0, f"{ik} was written again {records[0].duplicate_writes} time(s)"


def dlq_entry(env: Env, key: str, timeout: float = 30.0) -> DLQEntry:
    def probe() -> DLQEntry | None:
        return next((e for e in env.workload.dlq_entries(env.app) if e.key == key), None)
    return wait_until(probe, timeout=timeout, what=f"a dead letter for {key}", interval=0.3)


def wait_drained(env: Env, timeout: float = 30.0) -> None:
    """Every service queue empty and the worker idle (nothing active, reserved or scheduled)."""
    def probe() -> bool:
        with env.app.connection_for_write() as conn, conn.channel() as ch:
            for q in SERVICE_QUEUES:
                if ch.queue_declare(queue=q, passive=True).message_count:
                    return False
        insp = env.app.control.inspect(destination=[env.worker.nodename], timeout=1.0)
        for part in (insp.active(), insp.reserved(), insp.scheduled()):
            if part is None or any(part.values()):
                return False
        return True
    wait_until(probe, timeout=timeout, what="queues drained and the worker idle", interval=0.3)


def partner_calls(control: PartnerControl, idempotency_key: str) -> list[dict[str, Any]]:
    return [r for r in control.log() if r["idempotency_key"] == idempotency_key]


def executions(worker: SampleWorker, task_name: str, task_id: str) -> int:
    """How many times the worker log says `task_id` finished (succeeded), whatever the effects say."""
    return len(re.findall(rf"Task {re.escape(task_name)}\[{re.escape(task_id)}\] succeeded", worker.log_tail(10**7)))


# ---------------------------------------------------------------------------------------------- patterns
def test_fire_and_forget_notification_reaches_every_channel_once(env: Env, partner_control: PartnerControl) -> None:
    unit = unit_of(env, "notification")
    root = env.workload.submit(env.app, unit)
    by_key = wait_effects(env, unit)
    assert_exactly_once(by_key, unit.effects)
    for channel in env.settings.notification_channels:
        (rec,) = by_key[f"notification.{channel}:{unit.key}"]
        assert rec.task_id == delivery_task_id(unit.key, channel)
        assert rec.value["queue"] == "notifications"
        calls = partner_calls(partner_control, f"notification:{unit.key}:{channel}")
        assert [c["status"] for c in calls] == [202]
    # Fire-and-forget: nothing is stored for the producer to wait on.
    assert env.app.AsyncResult(root).state == "PENDING"


def test_order_chain_passes_each_result_on_and_applies_each_effect_once(
        env: Env, partner_control: PartnerControl) -> None:
    unit = unit_of(env, "order")
    env.workload.submit(env.app, unit)
    by_key = wait_effects(env, unit)
    assert_exactly_once(by_key, unit.effects)
    charged = by_key[f"payment.charged:{unit.key}"][0]
    confirmed = by_key[f"order.confirmed:{unit.key}"][0]
    assert charged.value["charge_id"].startswith("ch_")
    # The charge id only reaches confirm through the chain's passed-on result.
    assert confirmed.value["charge_id"] == charged.value["charge_id"]
    assert by_key[f"ledger.debit:{unit.key}"][0].value["charge_id"] == charged.value["charge_id"]
    queues = {ik.split(":")[0]: recs[0].value["queue"] for ik, recs in by_key.items()}
    assert queues == {"inventory.reserved": "orders", "payment.charged": "payments", "ledger.debit": "payments",
                      "order.confirmed": "orders", "receipt.sent": "notifications"}
    assert [c["status"] for c in partner_calls(partner_control, f"charge:{unit.key}")] == [201]


def test_chord_callback_runs_once_with_every_header_result(env: Env) -> None:
    # Pick a run id whose scan pages the on-call, so the priority route is exercised too.
    run_id = next(r for r in (f"pg{i}" + uuid.uuid4().hex[:6] for i in range(200))
                  if pages_oncall(assets_for(f"{r}:scan:0", env.settings.scan_assets)))
    unit = unit_of(env, "scan", run_id)
    root = env.workload.submit(env.app, unit)
    report = env.app.AsyncResult(root).get(timeout=30)
    assert report["assets"] == env.settings.scan_assets
    by_key = wait_effects(env, unit)
    assert_exactly_once(by_key, unit.effects)
    (report_row,) = by_key[f"scan.report:{unit.key}"]
    assert report_row.task_id == root
    assert report_row.value["assets"] == env.settings.scan_assets
    findings = sum(len(by_key[f"scan.asset:{a}"][0].value["findings"]) for a in assets_for(unit.key, 4))
    assert report_row.value["findings"] == findings
    assert by_key[f"oncall.paged:{unit.key}"][0].value["queue"] == "priority"
    wait_drained(env)
    assert executions(env.worker, "scans.aggregate_report", root) == 1


def test_domain_event_fans_out_to_every_subscriber_queue(env: Env) -> None:
    unit = unit_of(env, "event")
    env.workload.submit(env.app, unit)
    by_key = wait_effects(env, unit)
    assert_exactly_once(by_key, unit.effects)
    event_id = f"user.created:{unit.key}"
    welcome = by_key[f"welcome.sent:{unit.key}"][0]
    wallet = by_key[f"wallet.opened:{unit.key}"][0]
    assert (welcome.value["queue"], wallet.value["queue"]) == ("notifications", "payments")
    assert welcome.task_id == subscriber_task_id(event_id, "notifications.welcome_user")
    assert wallet.task_id == subscriber_task_id(event_id, "payments.open_wallet")


# ---------------------------------------------------------------------------------------------- retries, DLQ
def test_transient_partner_errors_are_retried_with_exponential_backoff(
        env: Env, partner_control: PartnerControl) -> None:
    partner_control.control(fail_next=2, status_codes=[503])
    unit = unit_of(env, "order")
    env.workload.submit(env.app, unit)
    assert_exactly_once(wait_effects(env, unit), unit.effects)
    calls = partner_calls(partner_control, f"charge:{unit.key}")
    assert [(c["status"], c["attempt"]) for c in calls] == [(503, 1), (503, 2), (201, 3)]
    assert len({c["task_id"] for c in calls}) == 1, "a retry keeps its task id"
    gaps = [(b["mono_ns"] - a["mono_ns"]) / 1e9 for a, b in zip(calls, calls[1:], strict=False)]
    # No jitter in this module: countdowns are BACKOFF * 2**n.
    assert gaps[0] >= BACKOFF * 0.9 and gaps[1] >= 2 * BACKOFF * 0.9, gaps


def test_fatal_partner_error_is_not_retried_and_lands_in_dlq(env: Env, partner_control: PartnerControl) -> None:
    unit = unit_of(env, "declined")
    env.workload.submit(env.app, unit)
    entry = dlq_entry(env, unit.key)
    assert (entry.name, entry.attempts, entry.copies, entry.queue) == ("payments.charge", 1, 1, "payments")
    assert "FatalPartnerError" in entry.exception and "402" in entry.exception
    assert [c["status"] for c in partner_calls(partner_control, f"charge:{unit.key}")] == [402]
    assert_exactly_once({r.idempotency_key: [r] for r in effects_of(env, unit.key)}, unit.effects)


def test_poison_task_lands_in_dlq_exactly_once_with_its_full_envelope(env: Env) -> None:
    unit = unit_of(env, "poison")
    root = env.workload.submit(env.app, unit)
    entry = dlq_entry(env, unit.key)
    wait_drained(env)
    (entry,) = [e for e in env.workload.dlq_entries(env.app) if e.key == unit.key]
    assert entry.task_id == root
    assert entry.name == "orders.validate"
    assert entry.args[0]["order_id"] == unit.key and entry.kwargs == {"key": unit.key}
    assert entry.exception.startswith("OrderValidationError: ") and "qty=0" in entry.exception
    assert "validate_order" in entry.traceback
    assert (entry.attempts, entry.copies, entry.queue, entry.reason) == (1, 1, "orders", "rejected")
    assert entry.run_id == unit.run_id
    assert env.store.failures([root])[root].recorded == 1, "the poison task ran more than once"
    assert effects_of(env, unit.key) == []


def test_exhausted_retries_land_in_dlq_after_max_retries(env: Env, partner_control: PartnerControl) -> None:
    unit = unit_of(env, "exhausted")
    env.workload.submit(env.app, unit)
    entry = dlq_entry(env, unit.key)
    assert (entry.name, entry.attempts, entry.copies) == ("payments.charge", MAX_RETRIES + 1, 1)
    assert "RetryablePartnerError" in entry.exception and "503" in entry.exception
    calls = partner_calls(partner_control, f"charge:{unit.key}")
    assert [c["attempt"] for c in calls] == list(range(1, MAX_RETRIES + 2))


def test_a_stale_copy_of_a_retried_attempt_is_ignored_not_forked(env: Env, partner_control: PartnerControl) -> None:
    # Found under load (certify --load, broker_outage_proxy_down): a broker blip right after
    # `self.retry()` published attempt n+1 loses attempt n's ack; attempt n is delivered again,
    # retries again, and two copies of the task run on to two dead letters. Here the copy whose
    # ack was lost is published by hand, after the task was dead-lettered.
    unit = unit_of(env, "exhausted")
    env.workload.submit(env.app, unit)
    entry = dlq_entry(env, unit.key)
    wait_drained(env)
    key = f"charge:{unit.key}"
    before = len(partner_calls(partner_control, key))
    env.app.send_task(entry.name, args=list(entry.args), kwargs=dict(entry.kwargs), task_id=entry.task_id,
                      retries=1, queue=entry.queue, headers={"chaos_key": unit.key, "chaos_run_id": unit.run_id})
    wait_until(lambda: "attempt 0.1 already retried" in env.worker.log_tail(10**6), timeout=20,
               what="the worker to ignore the stale copy", interval=0.3)
    wait_drained(env)
    assert len(partner_calls(partner_control, key)) == before, "the stale copy called the partner again"
    (again,) = [e for e in env.workload.dlq_entries(env.app) if e.key == unit.key]
    assert again.copies == 1


def test_dlq_command_lists_and_replays_an_entry_which_resumes_the_chain(
        env: Env, partner_control: PartnerControl) -> None:
    partner_control.control(fail_next=MAX_RETRIES + 1, status_codes=[503])
    unit = unit_of(env, "order")
    env.workload.submit(env.app, unit)
    entry = dlq_entry(env, unit.key)
    partner_control.reset()  # the partner is healthy again: replaying now must succeed
    cmd_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SAMPLE_")}, **env.settings.to_env()}

    def dlq_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sample_system.dlq", *args], env=cmd_env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    listed = dlq_cmd("list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [e for e in json.loads(listed.stdout) if e["key"] == unit.key]
    assert [(e["task_id"], e["copies"]) for e in mine] == [(entry.task_id, 1)]
    assert dlq_cmd("list").stdout.count(entry.task_id) == 1
    replayed = dlq_cmd("replay", entry.task_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {entry.task_id}" in replayed.stdout
    by_key = wait_effects(env, unit)
    assert_exactly_once(by_key, unit.effects)
    assert all(e.key != unit.key for e in env.workload.dlq_entries(env.app))
    assert dlq_cmd("replay", entry.task_id).returncode == 1, "replaying an id that is not there is an error"


# ---------------------------------------------------------------------------------------------- limits
def test_rate_limit_holds_per_worker(env: Env, partner_control: PartnerControl) -> None:
    key = f"rate-{uuid.uuid4().hex[:8]}"
    channels = [f"c{i}" for i in range(12)]
    env.app.send_task("notifications.notify", args=("user-rate", "hello"), kwargs={"key": key, "channels": channels})
    wait_until(lambda: len(effects_of(env, key)) == len(channels), timeout=30, what="12 rate-limited deliveries")
    times = sorted(c["mono_ns"] / 1e9 for c in partner_control.log()
                   if (c["idempotency_key"] or "").startswith(f"notification:{key}:"))
    assert len(times) == len(channels)
    # A token bucket of capacity 1 at 5/s: any 6 consecutive calls span >= 1 s nominally (slack for
    # dispatch jitter on a loaded machine; without the limit they span a few milliseconds).
    window = min(b - a for a, b in zip(times, times[RATE_PER_S:], strict=False))
    assert window >= 0.7, f"{RATE_PER_S + 1} calls within {window:.2f}s: the {RATE_PER_S}/s rate limit did not hold"
    assert times[-1] - times[0] >= (len(times) - 2) / RATE_PER_S * 0.9


def test_soft_time_limit_is_retried(env: Env, partner_control: PartnerControl) -> None:
    partner_control.control(stall_next=1, stall_ms=2500)
    key = f"soft-{uuid.uuid4().hex[:8]}"
    env.app.send_task("notifications.deliver", args=("email", "u", "hi"), kwargs={"key": key},
                      soft_time_limit=1, time_limit=10)
    wait_until(lambda: effects_of(env, key), timeout=30, what="the delivery after a soft time limit")
    (rec,) = effects_of(env, key)
    assert rec.duplicate_writes == 0
    wait_until(lambda: len(partner_calls(partner_control, f"notification:{key}:email")) == 2, timeout=10,
               what="the stalled first call to be logged")
    calls = partner_calls(partner_control, f"notification:{key}:email")
    assert sorted(c["attempt"] for c in calls) == [1, 2]


# ---------------------------------------------------------------------------------------------- workload
def test_workload_contract_end_to_end(env: Env, partner_control: PartnerControl) -> None:
    run_id = "wl" + uuid.uuid4().hex[:8]
    env.workload.setup(env.app)
    units = validate_units(env.workload, env.workload.units(2, run_id), run_id)
    roots = {u.key: env.workload.submit(env.app, u) for u in units}
    assert len(set(roots.values())) == len(units)
    complete = [u for u in units if u.expected == "complete"]
    dlq_units = [u for u in units if u.expected == "dlq"]
    for u in units:
        if u.effects:
            wait_effects(env, u, timeout=60)
    wait_until(lambda: {e.key for e in env.workload.dlq_entries(env.app)} >= {u.key for u in dlq_units},
               timeout=60, what="every dlq unit in the DLQ", interval=0.5)
    wait_drained(env)
    effects = env.workload.effects()
    for u in complete + dlq_units:
        by_key: dict[str, list[EffectRecord]] = {}
        for r in effects.get(u.key, []):
            by_key.setdefault(r.idempotency_key, []).append(r)
        assert_exactly_once(by_key, u.effects)
    # The run id travelled in the chaos_run_id header through chains, chords, retries and fan-outs.
    assert set(env.store.effects_by_key(run_id=run_id)) == {u.key for u in units if u.effects}
    entries = env.workload.dlq_entries(env.app)
    assert sorted(e.key for e in entries) == sorted(u.key for u in dlq_units)
    assert all(e.copies == 1 and e.run_id == run_id for e in entries)
