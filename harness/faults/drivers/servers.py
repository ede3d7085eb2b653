"""Server fault drivers: the broker or result backend unavailable, RabbitMQ's memory alarm.

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
broker_outage        proxy_down: disable both broker proxies; blackhole: timeout  enable / remove the
backend_outage       toxic (0 ms: drop everything) both ways; kill_restart:       toxics / start the
                     SIGKILL the server; graceful_stop: stop it (a SQLite         server again
                     backend: the file moved away / locked)
memory_alarm         ``rabbitmqctl set_vm_memory_high_watermark <tiny>``           set it to ``restore``
broker_pause         SIGSTOP to each process group of the broker (``docker        SIGCONT (``docker
                     pause`` for a container)                                     unpause``)
broker_vanish        a ``slow_close`` toxic (a day) on the role's broker          start the broker;
                     proxies, downstream: the end of their connections is         the toxics stay
                     withheld; then SIGKILL of the broker. The role's clients     until the nemesis
                     keep open, silent (half-open) sockets                        is released
===================  ==========================================================  ====================

Example:
    >>> from harness.faults.kinds import BackendOutage
    >>> BackendOutageDriver().fault_type is BackendOutage, BackendOutageDriver.space_fields
    (True, ('outage_modes',))
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from harness.errors import UnsupportedFault
from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver
from harness.faults.drivers.network import outage, remove_toxic
from harness.faults.kinds import (
    OUTAGE_MODES,
    ROLE_GROUPS,
    BackendOutage,
    BrokerOutage,
    BrokerPause,
    BrokerVanish,
    Fault,
    MemoryAlarm,
    role_proxies,
)
from harness.processes.freeze import freeze_group, thaw_group

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["DRIVERS"]

_PROCESS_MODES = ("kill_restart", "graceful_stop")


class _OutageDriver(FaultDriver[Any]):
    """broker_outage / backend_outage: network modes through the fault proxy, process modes
    through the stack's control of the server (``server`` names which)."""

    server: str = ""
    space_fields = ("outage_modes",)

    def preflight(self, ctx: FaultContext, fault: Any, what: str) -> None:
        if fault.mode in _PROCESS_MODES:
            ctx.server(self.server, what)
        else:
            ctx.toxiproxy  # noqa: B018 - raises when absent
            ctx.proxy_names(self.server)

    def apply(self, ctx: FaultContext, fault: Any, app: Application) -> dict[str, Any]:
        if fault.mode not in _PROCESS_MODES:
            return outage(ctx, app, ctx.proxy_names(self.server), fault.mode)
        ctl = ctx.server(self.server, fault.kind)

        def start_again() -> dict[str, Any]:
            if ctl.is_running():
                return {"server": ctl.name, "action": "already running"}
            t = time.monotonic()
            ctl.start()
            return {"server": ctl.name, "action": "started", "start_s": round(time.monotonic() - t, 3)}

        app.on_heal(f"start the {self.server} again", start_again)
        t = time.monotonic()
        # A server without a process (a SQLite file) says what its kill and stop really do.
        actions = getattr(ctl, "outage_actions", None) or {"kill_restart": "SIGKILL", "graceful_stop": "graceful stop"}
        if fault.mode == "kill_restart":
            ctl.kill()
        else:
            ctl.stop()
        action = actions[fault.mode]
        return {"server": ctl.name, "role": self.server, "action": action, "stop_s": round(time.monotonic() - t, 3)}

    def strategy(self, draws: Draws) -> SearchStrategy[Fault]:
        from hypothesis import strategies as st

        return st.builds(self.fault_type, mode=st.sampled_from(draws.outage_modes or OUTAGE_MODES))


class BrokerOutageDriver(_OutageDriver):
    """broker_outage: both broker proxies down or blackholed, or the broker killed / stopped;
    heal: proxies back, the broker started again."""

    fault_type = BrokerOutage
    server = "broker"


class BackendOutageDriver(_OutageDriver):
    """backend_outage: as broker_outage, for the result backend."""

    fault_type = BackendOutage
    server = "backend"


class MemoryAlarmDriver(FaultDriver[MemoryAlarm]):
    """memory_alarm: a tiny vm_memory_high_watermark (publishers blocked); heal: ``restore``."""

    fault_type = MemoryAlarm

    def preflight(self, ctx: FaultContext, fault: MemoryAlarm, what: str) -> None:
        broker = ctx.server("broker", what)
        if not callable(getattr(broker, "ctl", None)):
            raise UnsupportedFault(f"{what} needs a RabbitMQ broker the harness runs (it calls rabbitmqctl); "
                                   f"this stack's broker is {getattr(broker, 'name', type(broker).__name__)}")

    def apply(self, ctx: FaultContext, fault: MemoryAlarm, app: Application) -> dict[str, Any]:
        broker: Any = ctx.server("broker", fault.kind)  # preflight checked it has ctl()

        def fraction(x: float) -> str:
            return f"{x:.10f}".rstrip("0").rstrip(".") or "0"

        def restore() -> dict[str, Any]:
            broker.ctl("set_vm_memory_high_watermark", fraction(fault.restore))
            return {"vm_memory_high_watermark": fault.restore}

        app.on_heal("restore the memory high watermark", restore)
        out = broker.ctl("set_vm_memory_high_watermark", fraction(fault.watermark))
        return {"server": getattr(broker, "name", "broker"), "vm_memory_high_watermark": fault.watermark,
                "rabbitmqctl": out.strip()[-200:], "action": "memory alarm: publishers blocked"}

    def strategy(self, draws: Draws) -> SearchStrategy[MemoryAlarm]:
        from hypothesis import strategies as st

        return st.just(MemoryAlarm())


class BrokerPauseDriver(FaultDriver[BrokerPause]):
    """broker_pause: freeze the broker (SIGSTOP to each of its process groups; a container
    server pauses itself: ``docker pause``); heal: thaw it (SIGCONT; ``docker unpause``)."""

    fault_type = BrokerPause

    def preflight(self, ctx: FaultContext, fault: BrokerPause, what: str) -> None:
        ctx.server("broker", what)

    def apply(self, ctx: FaultContext, fault: BrokerPause, app: Application) -> dict[str, Any]:
        broker: Any = ctx.server("broker", fault.kind)
        # A container server pauses itself (cgroup freezer): its processes are not the host's
        # to signal. A local server's processes each lead their own group.
        if callable(getattr(broker, "pause", None)):
            app.on_heal(f"unpause {broker.name}", lambda: broker.unpause() or {"thawed": [broker.name]})
            broker.pause()
            return {"server": broker.name, "role": "broker", "action": "docker pause"}
        groups = list(broker.pids)
        frozen = []
        for pgid in groups:

            def thaw(pgid: int = pgid) -> dict[str, Any]:
                thaw_group(pgid)
                return {"thawed": [pgid]}

            app.on_heal(f"SIGCONT {broker.name} process group {pgid}", thaw)
            frozen.append(freeze_group(pgid))
        return {"server": broker.name, "role": "broker", "signal": "SIGSTOP", "process_groups": groups,
                "frozen": frozen}

    def strategy(self, draws: Draws) -> SearchStrategy[BrokerPause]:
        from hypothesis import strategies as st

        return st.just(BrokerPause())


#: How long a vanished broker's connections stay half-open at most (ms): far beyond any run;
#: the nemesis's release ends them first.
VANISH_HOLD_MS = 24 * 3600 * 1000


_VANISH_ROLES = (*ROLE_GROUPS["broker"], "broker")


class BrokerVanishDriver(FaultDriver[BrokerVanish]):
    """broker_vanish: the broker SIGKILLed while the fault proxy of the fault's role withholds
    the end of its connections (a ``slow_close`` toxic of a day, downstream, on each proxy of
    the role): those clients keep open and silent sockets, the other role hears the reset.
    Heal: the broker started again (new connections work); the half-open connections and the
    toxics stay until the nemesis is released (``Application.on_release``), when removing the
    toxics closes them."""

    fault_type = BrokerVanish
    space_fields = ("roles",)

    def preflight(self, ctx: FaultContext, fault: BrokerVanish, what: str) -> None:
        ctx.server("broker", what)
        ctx.toxiproxy  # noqa: B018 - raises when absent
        ctx.proxy_names(fault.role)

    def apply(self, ctx: FaultContext, fault: BrokerVanish, app: Application) -> dict[str, Any]:
        tp = ctx.toxiproxy
        ctl = ctx.server("broker", fault.kind)
        proxies = ctx.proxy_names(fault.role)
        held: list[str] = []
        for p in proxies:
            name = f"{app.fault_id}-slow_close-downstream"
            app.on_release(f"remove toxic {name} from {p} (close the half-open connections)",
                           functools.partial(remove_toxic, ctx, p, name))
            tp.add_toxic(p, "slow_close", stream="downstream", name=name, attributes={"delay": VANISH_HOLD_MS})
            held.append(f"{p}/{name}")

        def start_again() -> dict[str, Any]:
            if ctl.is_running():
                return {"server": ctl.name, "action": "already running"}
            t = time.monotonic()
            ctl.start()
            return {"server": ctl.name, "action": "started", "start_s": round(time.monotonic() - t, 3)}

        app.on_heal("start the broker again", start_again)
        t = time.monotonic()
        ctl.kill()
        told = [r for r in ROLE_GROUPS["broker"] if r not in role_proxies(fault.role)]
        return {"server": ctl.name, "role": fault.role, "action": "SIGKILL, the end of the connections withheld",
                "half_open": proxies, "toxics": held, "reset": told, "stop_s": round(time.monotonic() - t, 3)}

    def strategy(self, draws: Draws) -> SearchStrategy[BrokerVanish]:
        from hypothesis import strategies as st

        # Only the space's own roles (a generated fault must stay inside the space), and of
        # those only the broker's clients.
        return st.builds(BrokerVanish, role=draws.roles.filter(_VANISH_ROLES.__contains__))


DRIVERS: tuple[FaultDriver[Any], ...] = (BrokerOutageDriver(), BackendOutageDriver(), MemoryAlarmDriver(),
                                         BrokerPauseDriver(), BrokerVanishDriver())
