"""End to end on real servers: a `Run` with real workers, a real producer, the nemesis and the checkers.

The three cases of the issue, one configuration each, same fault (SIGKILL of the pool child as
soon as the task has applied its effect):

- early acks: the task is lost, and the checker says so (an allowed loss under early acks);
- late acks + reject_on_worker_lost: the task is redelivered and completes; the run is valid and
  the redelivery verdict shows it;
- the same with a non-idempotent effect: the redelivery applies the effect again, and the
  duplicates checker reports the duplicate effect.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from engine_app import EngineWorkload  # type: ignore[import-not-found]

from harness.checkers import Validity
from harness.errors import ConfigError, UnsupportedFault
from harness.faults import (
    KillWorkerChild,
    PartnerApiFault,
    RolePartition,
    Schedule,
    at,
    on_effect,
    on_execute,
    when,
)
from harness.history import F
from harness.run import Run, RunResult
from harness.workers import WorkerSpec

pytestmark = pytest.mark.chaos

ENGINE_DIR = Path(__file__).resolve().parent
APP = "engine_app:app"


def _spec(tmp: Path, queue: str, *, acks_late: bool, reject: bool, idempotent: bool = True) -> WorkerSpec:
    return WorkerSpec(app=APP, pool="prefork", concurrency=2, queues=(queue,), hostname="w1@127.0.0.1",
                      pythonpath=(str(ENGINE_DIR),),
                      env={"ENGINE_EFFECTS_DIR": str(tmp / "effects"), "ENGINE_ACKS_LATE": str(int(acks_late)),
                           "ENGINE_REJECT_ON_WORKER_LOST": str(int(reject)), "ENGINE_IDEMPOTENT": str(int(idempotent))})


def _kill_on_charge(stack: Any, tmp: Path, *, acks_late: bool, reject: bool, idempotent: bool = True,
                    claim: str | None = None) -> RunResult:
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    return Run(stack, app=APP, workload=EngineWorkload(tmp / "effects", seconds=1.5, queue=queue), claim=claim,
               workers=[_spec(tmp, queue, acks_late=acks_late, reject=reject, idempotent=idempotent)],
               schedule=Schedule.of(when(on_effect("charge"), KillWorkerChild())),
               n_per_kind=3, directory=tmp / "run", quiesce_timeout_s=45).execute()


def _killed(result: RunResult) -> dict[str, Any]:
    (applied,) = result.schedule_as_run
    assert applied.kind == "kill_worker_child" and applied.outcome == "healed", result.summary()
    assert applied.effect["scope"] == "child" and len(applied.effect["killed_pids"]) == 1
    return applied.effect


def test_early_acks_lose_the_killed_task_and_the_default_claim_says_so(chaos_stack: Any, tmp_path: Path) -> None:
    result = _kill_on_charge(chaos_stack, tmp_path, acks_late=False, reject=False)
    killed = _killed(result)
    assert result.expectations.acks_late is False  # read from the worker's own configuration
    assert result.valid is Validity.FALSE, result.summary()
    lost = result.verdict("lost_tasks")
    assert lost.counts["lost"] == 1 and lost.counts["lost_allowed"] == 0, result.summary()
    (example,) = lost.violations()
    assert example["task_id"] == killed["task_id"] and example["killed_by"]["scope"] == "child"
    # The configuration explains the loss and names the fix; it does not excuse it.
    assert example["setting"] == "task_acks_late" and "task_reject_on_worker_lost=True" in example["fix"]
    assert lost.counts["succeeded"] == 2
    assert result.verdict("liveness").counts.get("stuck") == 1
    assert [c["task_id"] for c in result.verdict("redelivery").violations()] == [killed["task_id"]]
    assert result.quiesced


def test_an_at_most_once_claim_allows_the_loss_and_says_so(chaos_stack: Any, tmp_path: Path) -> None:
    result = _kill_on_charge(chaos_stack, tmp_path, acks_late=False, reject=False, claim="at-most-once")
    assert result.expectations.claim.allows_loss
    assert result.valid is Validity.TRUE, result.summary()
    assert result.verdict("lost_tasks").counts["lost_allowed_by_claim"] == 1
    assert "redelivery" not in result.verdicts  # at-most-once: nothing is expected back


def test_late_acks_with_reject_on_worker_lost_redeliver_the_killed_task(chaos_stack: Any, tmp_path: Path) -> None:
    result = _kill_on_charge(chaos_stack, tmp_path, acks_late=True, reject=True)
    killed = _killed(result)
    assert result.valid is Validity.TRUE, result.summary()
    assert result.expectations.acks_late and result.expectations.reject_on_worker_lost
    red = result.verdict("redelivery")
    assert red.valid is Validity.TRUE and red.counts["redelivered"] == 1 and red.counts["in_flight_at_kill"] == 1
    dup = result.verdict("duplicates")
    assert dup.counts["cause_worker_lost"] == 1 and dup.counts["duplicate_effect"] == 0
    assert dup.counts["effects_deduplicated"] == 1  # the idempotent store absorbed the second charge
    # The history shows the redelivery itself: the broker's redelivered flag on the second receive.
    assert result.history is not None
    receives = [op for op in result.history if op.f == F.RECEIVE and op.value.get("task_id") == killed["task_id"]]
    assert [op.value["redelivered"] for op in receives] == [False, True]
    executions = [op for op in result.history if op.f == F.EXECUTE and op.value.get("task_id") == killed["task_id"]]
    assert [op.type.value for op in executions] == ["invoke", "info", "invoke", "ok"]
    assert len({op.process for op in executions}) == 2  # the second run is in a new pool child
    # Everything the run wrote is in its directory, JSON all the way.
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["valid"] is True and saved["schedule_as_run"][0]["effect"]["task_id"] == killed["task_id"]
    assert result.history_path == str(tmp_path / "run" / "history")


def test_non_idempotent_effect_is_duplicated_by_the_redelivery(chaos_stack: Any, tmp_path: Path) -> None:
    result = _kill_on_charge(chaos_stack, tmp_path, acks_late=True, reject=True, idempotent=False)
    killed = _killed(result)
    assert result.valid is Validity.FALSE
    # Judged on the store's final contents: the effects checker; the reported re-application is evidence.
    assert result.verdict("duplicates").counts["effects_reapplied"] == 1
    fx = result.verdict("effects")
    assert fx.valid is Validity.FALSE and fx.counts["duplicate_effect"] == 1, result.summary()
    (example,) = fx.violations()
    assert example["kind"] == "duplicate_effect" and example["effect_kind"] == "charge" and example["stored"] == 2
    key = next(op.value["key"] for op in result.history or () if op.value and op.value.get("task_id") == killed["task_id"]
               and op.f == F.EXECUTE)
    assert example["key"] == key
    assert result.verdict("redelivery").valid is Validity.TRUE  # the redelivery itself worked
    assert result.verdict("lost_tasks").valid is Validity.TRUE


def test_workers_cut_from_the_broker_recover_after_the_heal(chaos_stack: Any, tmp_path: Path) -> None:
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    result = Run(chaos_stack, app=APP, workload=EngineWorkload(tmp_path / "effects", kinds=("quick",), queue=queue),
                 workers=[_spec(tmp_path, queue, acks_late=True, reject=True)],
                 schedule=Schedule.of(at(0.3, RolePartition("worker_broker"), duration_s=2.0)),
                 n_per_kind=8, submit_interval_s=0.1, quiesce_timeout_s=60).execute()
    (applied,) = result.schedule_as_run
    assert applied.outcome == "healed" and applied.healed_s is not None and applied.started_s is not None
    assert applied.healed_s - applied.started_s >= 2.0
    assert result.counts["units_after_heal"] == 2
    assert result.verdict("lost_tasks").valid is Validity.TRUE, result.summary()
    assert result.verdict("liveness").valid is Validity.TRUE, result.summary()
    rec = result.verdict("recovery")
    assert rec.valid is Validity.TRUE and rec.metrics["time_to_recover_s"] > 0, result.summary()
    assert result.quiesced and result.history_path is None  # no directory given: nothing kept on disk


class _StoreThatDropsEffects(EngineWorkload):  # type: ignore[misc]
    """The engine workload whose effect store lost every write: every task still reports SUCCESS."""

    def effects(self) -> dict[str, list[Any]]:
        return {}


def test_a_store_that_drops_effects_is_invalid_even_though_every_task_succeeded(chaos_stack: Any,
                                                                                  tmp_path: Path) -> None:
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    result = Run(chaos_stack, app=APP, workload=_StoreThatDropsEffects(tmp_path / "effects", kinds=("quick",),
                                                                      queue=queue),
                 workers=[_spec(tmp_path, queue, acks_late=True, reject=True)], n_per_kind=2).execute()
    assert result.verdict("lost_tasks").counts["succeeded"] == 2  # the system says it did the work
    fx = result.verdict("effects")
    assert result.valid is Validity.FALSE and fx.counts["missing_effect"] == 2, result.summary()
    assert all(ce["reported_success"] and ce["reported_success"][0]["name"] == "engine.quick"
               for ce in fx.violations())


def test_a_run_refuses_bad_input_before_starting_anything(chaos_stack: Any, tmp_path: Path) -> None:
    w = EngineWorkload(tmp_path / "effects")
    spec = _spec(tmp_path, "engine-unused", acks_late=False, reject=False)
    with pytest.raises(ConfigError, match="n_per_kind must be an int >= 1"):
        Run(chaos_stack, app=APP, workload=w, workers=[spec], n_per_kind=0)
    with pytest.raises(ConfigError, match="lacks .*'submit'"):
        Run(chaos_stack, app=APP, workload=object(), workers=[spec])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="after_heal is the fraction"):
        Run(chaos_stack, app=APP, workload=w, workers=[spec], after_heal=1.5)
    with pytest.raises(ConfigError, match="no proxy named 'nowhere'"):
        Run(chaos_stack, app=APP, workload=w, workers=[spec], directory=tmp_path / "r1",
            schedule=Schedule.of(at(0, PartnerApiFault(proxy="nowhere")))).execute()
    with pytest.raises(UnsupportedFault, match="needs the prefork pool|prefork pool child"):
        Run(chaos_stack, app=APP, workload=w, directory=tmp_path / "r2",
            workers=[WorkerSpec(app=APP, pool="solo", queues=("engine-unused",), pythonpath=(str(ENGINE_DIR),))],
            schedule=Schedule.of(when(on_effect("charge"), KillWorkerChild()))).execute()
    with pytest.raises(ConfigError, match="cannot import the Celery app 'nowhere_app:app'"):
        Run(chaos_stack, app="nowhere_app:app", workload=w, workers=[spec], directory=tmp_path / "r3").execute()
    run = Run(chaos_stack, app=APP, workload=w, workers=[spec])
    assert run._once.acquire(blocking=False)  # held from here on, as by a first execute()
    with pytest.raises(ConfigError, match="executed already"):
        run.execute()


def test_a_fault_that_never_bit_makes_the_run_unknown(chaos_stack: Any, tmp_path: Path) -> None:
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    result = Run(chaos_stack, app=APP, workload=EngineWorkload(tmp_path / "effects", kinds=("quick",), queue=queue),
                 workers=[_spec(tmp_path, queue, acks_late=True, reject=True)],
                 schedule=Schedule.of(when(on_execute("engine.never_called", timeout_s=1.5), KillWorkerChild())),
                 n_per_kind=2).execute()
    (applied,) = result.schedule_as_run
    assert applied.outcome == "never_bit" and "did not fire within 1.5 s" in (applied.error or "")
    assert result.counts["faults_bit"] == 0
    assert result.valid is Validity.UNKNOWN, result.summary()  # a vacuous pass is not a pass
    assert result.verdict("redelivery").valid is Validity.UNKNOWN
    assert result.verdict("lost_tasks").valid is Validity.TRUE  # the work itself was fine


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_mid_run_heals_and_reaps_everything(chaos_stack: Any, tmp_path: Path) -> None:
    import _thread
    import os
    import threading

    from harness.stack.base import Role

    queue = f"engine-{uuid.uuid4().hex[:6]}"
    run = Run(chaos_stack, app=APP, workload=EngineWorkload(tmp_path / "effects", kinds=("quick",), queue=queue),
              workers=[_spec(tmp_path, queue, acks_late=True, reject=True)],
              schedule=Schedule.of(at(0, RolePartition("worker_broker"), duration_s=60)), n_per_kind=2)
    started = threading.Event()
    run._log = lambda msg: started.set() if msg.endswith("load_start") else None
    timer = threading.Thread(target=lambda: started.wait(60) and (time.sleep(1.0), _thread.interrupt_main()))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run.execute()
    finally:
        timer.join(70)
    proxy = chaos_stack.urls.proxied[Role.WORKER_BROKER].proxy_name
    assert chaos_stack.toxiproxy.get_proxy(proxy).enabled, "the partition was healed"
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if queue.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    left.append(pid)
            except OSError:
                pass
    assert left == [], "worker processes of the interrupted run are still alive"
    assert not list(Path(tempfile.gettempdir()).glob(f"chaos-{run.run_id}-*")), "the run's temp dir was removed"
