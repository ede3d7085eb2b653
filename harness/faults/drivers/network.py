"""Network fault drivers: one role's proxies cut, slowed or mangled through the fault proxy.

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
role_partition       disable (proxy_down) or blackhole the role's proxies          enable / remove
latency, bandwidth,  a toxic per proxy and direction, named ``<fault id>-<type>-   remove those toxics
reset_peer, slicer,  <stream>``
limit_data
===================  ==========================================================  ====================

The helpers (`disable`, `toxics`, `outage`) are shared with the server and dependency drivers,
whose network modes are the same proxy operations on other proxies.

Example:
    >>> from harness.faults.kinds import Latency
    >>> LatencyDriver().fault_type is Latency, LatencyDriver.cuts_running_tasks
    (True, False)
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver
from harness.faults.kinds import (
    PARTITION_MODES,
    Bandwidth,
    Fault,
    Latency,
    LimitData,
    ResetPeer,
    RolePartition,
    Slicer,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["DRIVERS", "disable", "outage", "remove_toxic", "toxics"]

_STREAMS = {"both": ("upstream", "downstream"), "to_server": ("upstream",), "to_client": ("downstream",)}


def _enable(ctx: FaultContext, proxy: str) -> dict[str, Any]:
    ctx.toxiproxy.update_proxy(proxy, enabled=True)
    return {"enabled": [proxy]}


def remove_toxic(ctx: FaultContext, proxy: str, name: str) -> dict[str, Any]:
    """Remove toxic `name` from `proxy` (already gone counts as removed)."""
    from harness.toxiproxy.client import ToxiproxyError

    try:
        ctx.toxiproxy.remove_toxic(proxy, name)
    except ToxiproxyError as exc:
        if exc.status != 404:  # already gone (proxy re-created, reset): healed either way
            raise
    return {"removed": [f"{proxy}/{name}"]}


def disable(ctx: FaultContext, app: Application, proxies: list[str]) -> dict[str, Any]:
    """Disable `proxies` (open connections closed, new ones refused); enabled again at heal."""
    tp = ctx.toxiproxy
    for p in proxies:
        app.on_heal(f"enable proxy {p}", functools.partial(_enable, ctx, p))
        tp.update_proxy(p, enabled=False)
    return {"proxies": proxies, "action": "disabled (connections closed, new ones refused)"}


def toxics(ctx: FaultContext, app: Application, proxies: list[str], type_: str, attributes: dict[str, int],
           direction: str) -> dict[str, Any]:
    """Add a `type_` toxic to each proxy and stream of `direction`; removed at heal."""
    tp = ctx.toxiproxy
    added: list[str] = []
    for p in proxies:
        for stream in _STREAMS[direction]:
            name = f"{app.fault_id}-{type_}-{stream}"
            app.on_heal(f"remove toxic {name} from {p}", functools.partial(remove_toxic, ctx, p, name))
            tp.add_toxic(p, type_, stream=stream, name=name, attributes=attributes)
            added.append(f"{p}/{name}")
    return {"proxies": proxies, "toxics": added, "type": type_, "attributes": dict(attributes),
            "direction": direction}


def outage(ctx: FaultContext, app: Application, proxies: list[str], mode: str) -> dict[str, Any]:
    """``proxy_down`` (refused) or ``blackhole`` (every byte dropped both ways, no close)."""
    if mode == "proxy_down":
        return disable(ctx, app, proxies)
    eff = toxics(ctx, app, proxies, "timeout", {"timeout": 0}, "both")
    eff["action"] = "blackhole (every byte dropped both ways, no close)"
    return eff


class _RoleDriver(FaultDriver[Any]):
    """A fault on the proxies of its ``role``: needs the fault proxy and those proxies."""

    space_fields = ("roles",)

    def preflight(self, ctx: FaultContext, fault: Any, what: str) -> None:
        ctx.toxiproxy  # noqa: B018 - raises when absent
        ctx.proxy_names(fault.role)


class RolePartitionDriver(_RoleDriver):
    """role_partition: disable (proxy_down) or blackhole the role's proxies; heal: enable / remove."""

    fault_type = RolePartition

    def apply(self, ctx: FaultContext, fault: RolePartition, app: Application) -> dict[str, Any]:
        return outage(ctx, app, ctx.proxy_names(fault.role), fault.mode)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        return st.builds(RolePartition, role=draws.roles, mode=st.sampled_from(PARTITION_MODES))


class LatencyDriver(_RoleDriver):
    """latency: a ``latency`` toxic (``ms`` ± ``jitter_ms``) per proxy and stream; heal: removed."""

    fault_type = Latency

    def apply(self, ctx: FaultContext, fault: Latency, app: Application) -> dict[str, Any]:
        return toxics(ctx, app, ctx.proxy_names(fault.role), "latency",
                      {"latency": fault.ms, "jitter": fault.jitter_ms}, fault.direction)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        return st.builds(Latency, role=draws.roles, ms=st.integers(0, 2000), jitter_ms=st.integers(0, 500),
                         direction=draws.directions)


class BandwidthDriver(_RoleDriver):
    """bandwidth: a ``bandwidth`` toxic (``kb_per_s``) per proxy and stream; heal: removed."""

    fault_type = Bandwidth

    def apply(self, ctx: FaultContext, fault: Bandwidth, app: Application) -> dict[str, Any]:
        return toxics(ctx, app, ctx.proxy_names(fault.role), "bandwidth", {"rate": fault.kb_per_s},
                      fault.direction)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        return st.builds(Bandwidth, role=draws.roles, kb_per_s=st.integers(1, 256), direction=draws.directions)


class ResetPeerDriver(_RoleDriver):
    """reset_peer: a ``reset_peer`` toxic (RST after ``after_ms``) per proxy and stream; heal: removed."""

    fault_type = ResetPeer

    def apply(self, ctx: FaultContext, fault: ResetPeer, app: Application) -> dict[str, Any]:
        return toxics(ctx, app, ctx.proxy_names(fault.role), "reset_peer", {"timeout": fault.after_ms},
                      fault.direction)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        # A reset planned after the fault is healed never bites: mostly at once, else within 1 s.
        return st.builds(ResetPeer, role=draws.roles, after_ms=st.one_of(st.just(0), st.integers(1, 1000)),
                         direction=st.sampled_from(("to_server", "both", "to_client")))


class SlicerDriver(_RoleDriver):
    """slicer: a ``slicer`` toxic (small packets, ``delay_us`` apart) per proxy and stream; heal: removed."""

    fault_type = Slicer

    def apply(self, ctx: FaultContext, fault: Slicer, app: Application) -> dict[str, Any]:
        return toxics(ctx, app, ctx.proxy_names(fault.role), "slicer",
                      {"average_size": fault.average_size, "size_variation": fault.size_variation,
                       "delay": fault.delay_us}, fault.direction)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        def slicer(avg: int, var: int, delay: int, role: str, direction: str) -> Slicer:
            # size_variation must stay below average_size: fold it into range.
            return Slicer(role=role, average_size=avg, size_variation=var % avg, delay_us=delay,
                          direction=direction)

        return st.builds(slicer, st.integers(1, 256), st.integers(0, 255), st.integers(0, 2000), draws.roles,
                         draws.directions)


class LimitDataDriver(_RoleDriver):
    """limit_data: a ``limit_data`` toxic (close after ``bytes``) per proxy and stream; heal: removed."""

    fault_type = LimitData

    def apply(self, ctx: FaultContext, fault: LimitData, app: Application) -> dict[str, Any]:
        return toxics(ctx, app, ctx.proxy_names(fault.role), "limit_data", {"bytes": fault.bytes}, fault.direction)

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        return st.builds(LimitData, role=draws.roles, bytes=st.integers(1, 65536),
                         direction=st.sampled_from(("to_client", "to_server", "both")))


DRIVERS: tuple[FaultDriver[Any], ...] = (RolePartitionDriver(), LatencyDriver(), BandwidthDriver(),
                                         ResetPeerDriver(), SlicerDriver(), LimitDataDriver())
