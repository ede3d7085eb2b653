"""The public API (`harness.__all__`): what docs/architecture.md lists, each name with a runnable example,
loaded lazily so a worker process importing ``harness.workers.launch`` does not import the whole harness."""

from __future__ import annotations

import doctest
import inspect
import re
import subprocess
import sys
from pathlib import Path

import harness
from harness.faults.kinds import FAULT_KINDS, Fault

ROOT = Path(__file__).resolve().parents[1]


def _documented_names() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Public API (`harness`)", 1)[1].split("\n## ", 1)[0]
    listed = section.split("Everything else is reached", 1)[0]
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", listed)) - {"harness"}


def _kind_names() -> set[str]:
    return {"Fault", *(cls.__name__ for cls in FAULT_KINDS.values())}


def test_the_docs_list_the_exported_names() -> None:
    exported = set(harness.__all__)
    assert _kind_names() <= exported, "every fault kind is exported"
    documented = _documented_names()
    # The docs name the fault kinds as a group, with examples; every other name one by one.
    assert exported - _kind_names() == documented - _kind_names(), (
        f"in harness.__all__, not in docs/architecture.md: {sorted(exported - _kind_names() - documented)}; "
        f"in the docs, not exported: {sorted(documented - _kind_names() - exported)}")
    assert documented & _kind_names(), "the docs give an example fault kind"


def test_every_exported_name_resolves_and_has_a_runnable_example() -> None:
    for name in harness.__all__:
        obj = getattr(harness, name)
        doc = inspect.getdoc(obj) or ""
        examples = [line for line in doc.splitlines() if line.strip().startswith(">>>")]
        assert examples and not all("+SKIP" in line for line in examples), f"harness.{name} has no runnable example"
    assert issubclass(harness.KillWorkerChild, Fault)


def test_the_package_example_runs() -> None:
    result = doctest.testmod(harness, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


def test_importing_a_part_does_not_import_the_rest() -> None:
    code = ("import sys, harness, harness.workers.launch; "
            "print(sorted(m for m in ('harness.run', 'harness.checkers', 'hypothesis', 'locust') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        harness.teleport  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "teleport" in str(exc)
    else:
        raise AssertionError("harness.teleport resolved")
