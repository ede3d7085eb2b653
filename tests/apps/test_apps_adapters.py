"""The example apps' workload adapters: units, declared effects and bad input (pure: no servers)."""

from __future__ import annotations

import pytest
from test_apps_smoke import APPS, load_adapter  # type: ignore[import-not-found]

from harness.errors import ConfigError
from harness.workload import validate_units

ENV_SWITCH = {"shop_django": "SHOP_HARDENED", "ledger_sqla": "LEDGER_HARDENED"}


def workload(app_dir: str, **kw: object) -> object:
    return getattr(load_adapter(app_dir), APPS[app_dir])(**kw)


def test_shop_units_declare_every_row_the_business_needs() -> None:
    units = validate_units(w := workload("shop_django", hardened=False), w.units(1, "r1"), "r1")  # type: ignore[attr-defined]
    assert {u.key: u.effects for u in units} == {
        "r1:order:0": ("payment:r1:order:0", "email.receipt:r1:order:0"),
        "r1:checkout:0": ("reservation:r1:checkout:0/SKU-RED-1", "reservation:r1:checkout:0/SKU-BLU-7",
                          "reservation:r1:checkout:0/SKU-GRN-3", "shipment:r1:checkout:0"),
    }
    assert {u.expected for u in units} == {"complete"}


def test_ledger_units_declare_both_sides_of_a_transfer() -> None:
    units = validate_units(w := workload("ledger_sqla", hardened=False), w.units(2, "r2"), "r2")  # type: ignore[attr-defined]
    assert [u.key for u in units] == ["r2:transfer:0", "r2:transfer:1", "r2:payout:0", "r2:payout:1"]
    assert units[0].effects == ("debit:r2:transfer:0", "credit:r2:transfer:0", "statement:r2:transfer:0")
    assert units[2].effects == ("settlement:r2:payout:0",)


@pytest.mark.parametrize("app_dir", sorted(APPS))
def test_hardening_switch_comes_from_the_environment(app_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH[app_dir], "1")
    assert workload(app_dir).hardened is True  # type: ignore[attr-defined]
    monkeypatch.setenv(ENV_SWITCH[app_dir], "0")
    assert workload(app_dir).hardened is False  # type: ignore[attr-defined]
    assert workload(app_dir, hardened=True).hardened is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("app_dir", sorted(APPS))
def test_bad_input_is_a_config_error_naming_the_fix(app_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH[app_dir], "maybe")
    with pytest.raises(ConfigError, match="set it to 1 .on. or 0 .off."):
        workload(app_dir)
    monkeypatch.delenv(ENV_SWITCH[app_dir])
    with pytest.raises(ConfigError, match="choose from"):
        workload(app_dir, kinds=("refund",))
    with pytest.raises(ConfigError, match="knows only hardened=True/False"), \
            workload(app_dir).prepare(None, acks_late=False):  # type: ignore[attr-defined]
        pass
    with pytest.raises(ConfigError, match="contain no ':'"):
        workload(app_dir).units(1, "a:b")  # type: ignore[attr-defined]
