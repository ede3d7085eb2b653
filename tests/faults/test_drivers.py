"""The fault driver registry: every kind has a driver, a strategy, documentation and a real-stack test;
the declarations the checkers read are well formed; nothing decides by a kind's name."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from harness.faults.drivers import DRIVERS, FaultDriver, driver_for, kinds_cutting_running_tasks
from harness.faults.generate import _SPACE_FIELDS, FaultSpace, faults
from harness.faults.kinds import FAULT_KINDS

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_has_a_driver_and_every_driver_a_kind() -> None:
    missing = sorted(k for k, cls in FAULT_KINDS.items() if cls not in DRIVERS)
    assert not missing, f"fault kinds without a driver in harness/faults/drivers/: {missing}"
    orphans = sorted(cls.__name__ for cls in DRIVERS if FAULT_KINDS.get(cls.kind) is not cls)
    assert not orphans, f"drivers for classes not in FAULT_KINDS: {orphans}"


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_every_driver_implements_preflight_apply_and_a_strategy_of_its_kind(kind: str) -> None:
    driver = driver_for(kind)
    for method in ("preflight", "apply", "strategy"):
        assert getattr(type(driver), method) is not getattr(FaultDriver, method), \
            f"the {kind} driver does not implement {method}"
    space = FaultSpace(kinds=(kind,), max_faults=1)

    @settings(max_examples=10, deadline=None)
    @given(faults(space))
    def draws_its_kind(fault) -> None:  # type: ignore[no-untyped-def]
        assert fault.kind == kind

    draws_its_kind()


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_declarations_are_data_the_checkers_and_the_space_can_read(kind: str) -> None:
    driver = driver_for(kind)
    assert isinstance(driver.cuts_running_tasks, bool)
    if driver.cuts_running_tasks:
        assert driver.scope in ("child", "worker"), f"{kind} cuts running tasks: say whether a child or a worker"
    # Only the fields FaultSpace checks are non-empty for the kinds that need them.
    assert set(driver.space_fields) <= set(_SPACE_FIELDS), f"{kind}: unknown FaultSpace fields {driver.space_fields}"


def test_the_kinds_that_cut_running_tasks() -> None:
    # Behaviour kept from before the drivers: kills and the cold shutdown cut running tasks.
    assert kinds_cutting_running_tasks(FAULT_KINDS) == {"kill_worker_child", "kill_worker", "cold_shutdown"}


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_every_kind_is_documented_by_its_driver_and_exercised_on_the_real_stack(kind: str) -> None:
    driver = driver_for(kind)
    module = sys.modules[type(driver).__module__]
    assert kind in (module.__doc__ or ""), f"{module.__name__}'s docstring does not say how {kind} is applied and healed"
    assert kind in (inspect.getdoc(type(driver)) or ""), f"{type(driver).__name__} has no docstring naming {kind}"
    real_tests = "".join(p.read_text() for p in (ROOT / "tests" / "faults").glob("test_nemesis_*.py"))
    cls = FAULT_KINDS[kind]
    assert f"{cls.__name__}(" in real_tests, f"no nemesis test applies {cls.__name__} to the real stack"


def _kind_name_tests(path: Path) -> list[str]:
    """``"kill" in kind``-style tests: a string constant `in` a name containing "kind"."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) \
                and any(isinstance(c, ast.Name) and "kind" in c.id for c in node.comparators):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_no_part_of_the_harness_decides_by_a_substring_of_a_fault_kind() -> None:
    found = [hit for p in sorted((ROOT / "harness").rglob("*.py")) for hit in _kind_name_tests(p)]
    assert not found, f"read the driver's declaration (or the fault op) instead of the kind's name: {found}"
