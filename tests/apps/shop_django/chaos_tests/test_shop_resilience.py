"""The shop's own resilience tests, as its team would write them with the celery-chaos plugin.

Run from the project directory (where manage.py is)::

    SHOP_HARDENED=1 PYTHONPATH=. pytest chaos_tests

The plugin (installed with celery-chaos) gives the session-scoped ``chaos_stack`` (RabbitMQ,
Redis and the fault proxy on loopback); each test deploys the shop on it through the adapter
(``chaos_workload.py``) and runs one certification scenario against the shop's own tasks.
"""

import pytest
from chaos_workload import ShopWorkload

from harness.certification import get, run_scenario


@pytest.mark.parametrize("scenario", ["baseline", "worker_child_sigkill"])
def test_the_shop_keeps_every_order_when_things_break(chaos_stack, scenario):
    report = run_scenario(chaos_stack, ShopWorkload(), get(scenario), app="shop.celery:app")
    assert report.valid == "true", report.error or {n: v.valid.value for n, v in report.verdicts.items()}
