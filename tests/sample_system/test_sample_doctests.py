"""The examples in the sample system's docstrings run (they are its first documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "harness.workload", "sample_system", "sample_system.settings", "sample_system.topology",
    "sample_system.effects", "sample_system.retry_policy", "sample_system.circuit_breaker",
    "sample_system.partner_client", "sample_system.partner_api", "sample_system.factory",
    "sample_system.dlq.envelope", "sample_system.services.orders", "sample_system.services.scans",
    "sample_system.services.events", "sample_system.workload",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest failure(s) in {name}"
