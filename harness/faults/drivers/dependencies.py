"""Dependency fault drivers: an external service the tasks call, routed through an extra proxy.

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
partner_api_fault    on the extra proxy (``stack.add_proxy``): down disables it;    enable / remove the
                     blackhole, latency, reset_peer add the toxic                 toxic
===================  ==========================================================  ====================

Example:
    >>> PartnerApiFaultDriver.space_fields
    ('extra_proxies',)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver
from harness.faults.drivers.network import disable, outage, toxics
from harness.faults.kinds import PARTNER_MODES, PartnerApiFault

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["DRIVERS"]


class PartnerApiFaultDriver(FaultDriver[PartnerApiFault]):
    """partner_api_fault: down (refused), blackhole, latency (``ms``) or reset_peer on ``proxy``."""

    fault_type = PartnerApiFault
    space_fields = ("extra_proxies",)

    def preflight(self, ctx: FaultContext, fault: PartnerApiFault, what: str) -> None:
        ctx.toxiproxy  # noqa: B018 - raises when absent
        ctx.proxy_names(fault.proxy)

    def apply(self, ctx: FaultContext, fault: PartnerApiFault, app: Application) -> dict[str, Any]:
        proxies = ctx.proxy_names(fault.proxy)
        if fault.mode == "down":
            return disable(ctx, app, proxies)
        if fault.mode == "blackhole":
            return outage(ctx, app, proxies, "blackhole")
        if fault.mode == "latency":
            return toxics(ctx, app, proxies, "latency", {"latency": fault.ms, "jitter": 0}, "both")
        return toxics(ctx, app, proxies, "reset_peer", {"timeout": 0}, "to_server")

    def strategy(self, draws: Draws) -> SearchStrategy[PartnerApiFault]:
        from hypothesis import strategies as st

        return st.builds(PartnerApiFault, mode=st.sampled_from(PARTNER_MODES),
                         proxy=st.sampled_from(draws.extra_proxies) if draws.extra_proxies else st.nothing(),
                         ms=st.integers(0, 3000))


DRIVERS: tuple[FaultDriver[Any], ...] = (PartnerApiFaultDriver(),)
