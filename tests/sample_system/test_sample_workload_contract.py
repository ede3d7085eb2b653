"""The workload contract (harness/workload.py) and the sample workload's units (pure)."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.workload import DLQEntry, EffectRecord, Unit, Workload, validate_units
from sample_system import Settings
from sample_system.services.scans import assets_for, pages_oncall
from sample_system.workload import KINDS, SampleWorkload


def workload(**kw: object) -> SampleWorkload:
    return SampleWorkload(Settings(db_url="sqlite:///:memory:", **kw))  # type: ignore[arg-type]


def test_the_sample_workload_implements_the_protocol() -> None:
    assert isinstance(workload(), Workload)


def test_units_are_unique_namespaced_and_carry_their_expected_outcome() -> None:
    w = workload()
    units = validate_units(w, w.units(3, "run7"), "run7")
    assert len(units) == 3 * len(KINDS)
    assert {u.kind: u.expected for u in units} == {
        "notification": "complete", "order": "complete", "scan": "complete", "event": "complete",
        "poison": "dlq", "declined": "dlq", "exhausted": "dlq"}
    assert all(u.key.startswith("run7:") and u.run_id == "run7" for u in units)


def test_expected_effects_name_every_idempotency_key_once() -> None:
    w = workload(notification_channels=("email", "sms"), scan_assets=3)
    by_kind = {u.kind: u for u in w.units(1, "r")}
    assert by_kind["notification"].effects == ("notification.email:r:notification:0", "notification.sms:r:notification:0")
    assert by_kind["order"].effects == tuple(f"{k}:r:order:0" for k in (
        "inventory.reserved", "payment.charged", "ledger.debit", "order.confirmed", "receipt.sent"))
    scan = by_kind["scan"].effects
    assets = assets_for("r:scan:0", 3)
    assert scan[:4] == (*(f"scan.asset:{a}" for a in assets), "scan.report:r:scan:0")
    assert ("oncall.paged:r:scan:0" in scan) == pages_oncall(assets)
    assert by_kind["poison"].effects == ()
    assert by_kind["exhausted"].effects == ("inventory.reserved:r:exhausted:0",)


def test_kinds_can_be_narrowed_and_are_validated() -> None:
    assert [u.kind for u in SampleWorkload(Settings(), kinds=("scan",)).units(2, "r")] == ["scan", "scan"]
    with pytest.raises(ConfigError, match="choose from"):
        SampleWorkload(Settings(), kinds=("payroll",))
    with pytest.raises(ConfigError, match="contain no ':'"):
        workload().units(1, "a:b")


def test_validate_units_names_every_broken_promise() -> None:
    class W:
        kinds = ("a",)
    bad = [Unit("run1:a:0", "a", "complete", run_id="run1"), Unit("run1:a:0", "b", "lost", run_id="run1"),  # type: ignore[arg-type]
           Unit("other", "a", "dlq")]
    with pytest.raises(ConfigError) as info:
        validate_units(W(), bad, "run1")
    msg = str(info.value)
    assert "used twice" in msg and "kind 'b'" in msg and "expects 'lost'" in msg and "does not contain the run id" in msg


def test_boundary_values_serialise_to_json_dicts() -> None:
    assert Unit("k", "order", "complete", ("x:k",), "r").to_dict()["effects"] == ["x:k"]
    assert EffectRecord("k", "kind", "kind:k", value={"a": 1}).to_dict()["value"] == {"a": 1}
    assert DLQEntry(task_id="t", name="n", args=(1,)).to_dict()["args"] == [1]
