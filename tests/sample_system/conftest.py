"""Fixtures for the sample-system tests: the session stack, the partner API behind its own proxy.

Real components only: the plugin's session stack (RabbitMQ, Redis, fault proxy), the partner
API as a subprocess reached through a Toxiproxy proxy, SQLite effect stores in temp dirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sample_testkit import Partner

from sample_system.partner_api import PartnerControl, partner_behind_proxy


@pytest.fixture(scope="session")
def partner(chaos_stack: Any) -> Iterator[Partner]:
    """The partner API subprocess, routed through its own proxy of the session stack."""
    with partner_behind_proxy(chaos_stack, f"sample-partner-{uuid.uuid4().hex[:6]}") as (api, url):
        yield Partner(control=api, url=url, direct_url=api.url)


@pytest.fixture()
def partner_control(partner: Partner) -> Iterator[PartnerControl]:
    """The partner with no failures and an empty log, reset again afterwards."""
    partner.control.reset()
    yield partner.control
    partner.control.reset()
