"""The sample system reports its effects and dead letters into the harness history (real worker, real stack).

The worker runs under ``python -m harness.history.record_worker`` (the ``celery`` command with
recording installed); the tasks' ``record_effect`` / ``record_dlq`` calls must reach the files.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from sample_testkit import Partner, running_worker, stack_settings, wait_until

from harness.history import F, read_history
from sample_system import make_app
from sample_system.partner_api import PartnerControl
from sample_system.workload import SampleWorkload


def test_effects_and_dead_letters_reach_the_history(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    run_id = "h" + uuid.uuid4().hex[:8]
    history_dir = tmp_path / "history"
    history_dir.mkdir()
    settings = stack_settings(chaos_stack, partner, tmp_path, scan_assets=2)
    workload = SampleWorkload(settings, kinds=("order", "poison"))
    setup_app = make_app(settings)
    try:
        workload.setup(setup_app)
    finally:
        setup_app.close()
    order, poison = workload.units(1, run_id)
    with running_worker(settings, tmp_path, command=(sys.executable, "-m", "harness.history.record_worker"),
                        extra_env={"CHAOS_HISTORY_DIR": str(history_dir), "CHAOS_RUN_ID": run_id}) as (app, _w):
        workload.submit(app, order)
        poison_root = workload.submit(app, poison)

        def recorded() -> Any:
            h = read_history(history_dir)
            effects = {(op.value["key"], op.value["kind"]) for op in h.where(f=F.EFFECT)}
            dlq = [op for op in h.where(f=F.DLQ)]
            return (h, effects, dlq) if len(effects) >= len(order.effects) and dlq else None

        history, effects, dlq = wait_until(recorded, timeout=30, what="effect and dlq ops in the history",
                                           interval=0.3)
    assert effects == {(order.key, fx.split(":")[0]) for fx in order.effects}
    effect_ops = list(history.where(f=F.EFFECT))
    assert all(op.value["duplicate"] is False and op.value["idempotency_key"] for op in effect_ops)
    assert {op.value.get("run_id") for op in effect_ops} == {run_id}
    (landed,) = dlq
    assert (landed.value["task_id"], landed.value["key"], landed.value["mode"]) == (poison_root, poison.key, "reject")
