"""What every fault driver is given and declares: the context, one application, the driver base.

Responsibility: the contract between the nemesis (a generic loop: when, record, heal) and the
drivers (how one fault kind is checked, applied and undone, and how Hypothesis draws it). A
driver never records history and never decides timing; the nemesis never knows a kind.

- `FaultContext`: what drivers act on (the stack, the run's workers, the history they record
  into) and what the run remembers across faults (the history tail, the task names cut so
  far). One per nemesis.
- `Application`: one fault being applied: its id (names toxics), the history op that triggered
  it, and the undo steps the driver registers *before* each harmful step, so a failure half way
  through is undone by the same path as a heal.
- `FaultDriver`: ``preflight``, ``apply`` (returns the observed effect), ``strategy``, and the
  declarations the checkers and the explorer read as data: ``cuts_running_tasks``, ``scope``,
  ``space_fields``.
- `Draws`: the shared Hypothesis draws a `FaultSpace` allows (roles, workers, ...), from which a
  driver builds its strategy.

Example:
    >>> app = Application("f1")
    >>> app.on_heal("say hello", lambda: {"said": "hello"})
    >>> [what for what, _ in app.undo]
    ['say hello']
    >>> app.on_release("say goodbye", lambda: None)
    >>> [what for what, _ in app.release]
    ['say goodbye']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.faults._tail import HistoryTail
from harness.faults.kinds import Fault, role_proxies
from harness.stack.base import Role, ServerControl, Stack, require

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from harness.toxiproxy.client import ToxiproxyClient

__all__ = ["Application", "Draws", "FaultContext", "FaultDriver", "NeverBit", "tenths"]

_ROLES = ("producer_broker", "worker_broker", "producer_backend", "worker_backend")
#: backend scheme -> the fault that acts on that backend, for a fault that cannot.
_NO_BACKEND_PROXY = {
    "db+sqlite": "a SQLite file is made unavailable with backend_outage(mode='kill_restart') (the file moved "
                 "away) or mode='graceful_stop' (the file locked)",
    "rpc": "the rpc:// backend is the broker (results travel on the broker connection): use a broker fault "
           "(broker_outage, or role_partition on worker_broker / producer_broker)",
}

FaultT = TypeVar("FaultT", bound=Fault)
Undo = Callable[[], "dict[str, Any] | None"]


class NeverBit(HarnessError):
    """The fault found nothing to act on (no task running to cut, no running worker)."""


@dataclass(slots=True)
class Application:
    """One fault being applied: its id, the op that triggered it, and the undo steps so far.

    The nemesis runs the undo steps newest first at heal, or at once when `apply` raises. The
    release steps are for what a fault leaves behind on purpose once healed (connections a
    vanished broker left half-open): the nemesis runs them when it is released, after the run
    has been observed, or at once, with the undo steps, when `apply` raises.
    """

    fault_id: str
    event: dict[str, Any] | None = None
    undo: list[tuple[str, Undo]] = field(default_factory=list)
    release: list[tuple[str, Undo]] = field(default_factory=list)

    def on_heal(self, what: str, fn: Undo) -> None:
        """Register an undo step; `what` names it in the error when it fails."""
        self.undo.append((what, fn))

    def on_release(self, what: str, fn: Undo) -> None:
        """Register a step that outlives the heal: run by `Nemesis.release` (or when apply fails)."""
        self.release.append((what, fn))


class FaultContext:
    """What drivers act on, and what one run remembers between faults.

    Args:
        stack: a started stack (local, containers or external).
        workers: the run's `WorkerGroup` (None: worker faults are refused at preflight).
        history_dir: the run's history directory, followed to find running tasks.
    """

    def __init__(self, stack: Stack, workers: Any = None, history_dir: Path | None = None) -> None:
        self.stack = stack
        self.workers = workers
        self.history_dir = history_dir
        #: Created on first need (an event trigger, a search for a running task): following
        #: the history costs a directory scan per poll.
        self.tail: HistoryTail | None = None
        #: Task names a child kill of this run has cut (kill_worker_child(count=N) seeks others).
        self.cut_names: set[str] = set()

    def history_tail(self) -> HistoryTail:
        """The run's history tail, created on first use (needs `history_dir`)."""
        if self.tail is None:
            if self.history_dir is None:
                raise ConfigError("following the history needs the nemesis's history_dir")
            self.tail = HistoryTail(self.history_dir)
        return self.tail

    @property
    def toxiproxy(self) -> ToxiproxyClient:
        """The stack's fault proxy client (UnsupportedFault when the stack has none)."""
        require(self.stack, "fault_proxy", "network faults")
        assert self.stack.toxiproxy is not None  # require() said so
        return self.stack.toxiproxy

    def proxy_names(self, role: str) -> list[str]:
        """The fault-proxy names behind a fault's ``role`` target (ConfigError when there is none)."""
        urls = self.stack.urls
        out: list[str] = []
        for r in role_proxies(role):
            if r in _ROLES:
                ep = urls.proxied.get(Role(r))
                if ep is None and not Role(r).is_broker and urls.backend_url and not urls.backend_url.startswith("redis"):
                    raise UnsupportedFault(f"a network fault on {r} needs a proxy in front of the result backend, and "
                                           f"this stack's backend ({urls.backend_url.split('://', 1)[0]}://) has "
                                           f"none: {_NO_BACKEND_PROXY.get(urls.backend_url.split('://', 1)[0], '')}")
                if ep is None:
                    raise ConfigError(f"the stack has no proxy for role {r}: network faults on it need the "
                                      "stack's per-role proxies (start the stack with a Toxiproxy)")
                # A cluster's clients fail over between nodes: the role is cut only when every
                # node's proxy of it is.
                nodes = urls.node_proxies.get(Role(r), ())
                out.extend([e.proxy_name for e in nodes] if nodes else [ep.proxy_name])
            else:
                extra = self.stack.extra_proxies
                ep = extra.get(r)
                if ep is None:
                    raise ConfigError(f"no proxy named {r!r} in this stack (extra proxies: {sorted(extra)}): create "
                                      f"it with stack.add_proxy({r!r}, 'HOST:PORT') before the run, or use a role "
                                      f"({', '.join(_ROLES)})")
                out.append(ep.proxy_name)
        return out

    def server(self, which: str, what: str) -> ServerControl:
        """The stack's control of its ``broker`` or ``backend`` process (UnsupportedFault without)."""
        require(self.stack, "process_control", what)
        ctl: ServerControl | None = self.stack.broker if which == "broker" else self.stack.backend
        if ctl is None and which == "backend" and self.stack.urls.backend_url.startswith("rpc"):
            raise UnsupportedFault(f"{what}: {_NO_BACKEND_PROXY['rpc']}")
        if ctl is None:
            raise UnsupportedFault(f"{what} needs control of the {which} process, which this stack does not have: "
                                   "use the local stack, or a network fault instead")
        return ctl

    def require_workers(self, what: str) -> Any:
        """The run's worker group (UnsupportedFault when the nemesis has none)."""
        if self.workers is None:
            raise UnsupportedFault(f"{what} needs the run's workers: build the Nemesis with workers=WorkerGroup(...)")
        return self.workers


def tenths(low: float, high: float) -> SearchStrategy[float]:
    """Seconds in tenths: readable in a reproducer, exact through JSON, shrinking to `low`."""
    from hypothesis import strategies as st

    lo, hi = round(low * 10), max(round(low * 10), round(high * 10))
    return st.integers(lo, hi).map(lambda n: n / 10)


@dataclass(frozen=True, slots=True)
class Draws:
    """The draws a `FaultSpace` allows, shared by every driver's strategy (built by
    `harness.faults.generate`). A field the space leaves empty draws nothing (``st.nothing()``).
    """

    roles: SearchStrategy[str]
    directions: SearchStrategy[str]
    workers: SearchStrategy[str | None]
    restart: SearchStrategy[bool]
    task_names: SearchStrategy[str | None]
    outage_modes: tuple[str, ...]
    extra_proxies: tuple[str, ...]


class FaultDriver(Generic[FaultT]):
    """How one fault kind is checked, applied, undone and explored.

    Subclasses set ``fault_type`` and implement the three methods. Declarations, read as data
    by the rest of the harness:

    - ``cuts_running_tasks``: the fault can cut a task mid-execution (a kill). The nemesis
      writes it into the fault's history op, the run lists the kind in
      ``Expectations.kill_fault_kinds``; the checkers then look for cut executions.
    - ``scope``: what a cut hits, ``"child"`` (one pool child) or ``"worker"`` (a whole worker).
    - ``space_fields``: the `FaultSpace` fields the strategy draws from; a space that leaves
      one empty while listing the kind is refused.
    """

    fault_type: ClassVar[type[Fault]]
    cuts_running_tasks: ClassVar[bool] = False
    scope: ClassVar[str | None] = None
    space_fields: ClassVar[tuple[str, ...]] = ()

    def preflight(self, ctx: FaultContext, fault: FaultT, what: str) -> None:
        """Raise ConfigError / UnsupportedFault (naming the fix) when `fault` cannot be applied here."""
        raise NotImplementedError

    def apply(self, ctx: FaultContext, fault: FaultT, app: Application) -> dict[str, Any]:
        """Apply `fault`, registering each undo step on `app` before its harmful step; return
        what it observably did (proxies, pids, task ids ...). Raise `NeverBit` when there was
        nothing to act on."""
        raise NotImplementedError

    def strategy(self, draws: Draws) -> SearchStrategy[FaultT]:
        """The Hypothesis strategy of this kind's faults within `draws`."""
        raise NotImplementedError

    def observed(self, effect: dict[str, Any]) -> dict[str, Any]:
        """The effect as recorded in the fault's history op: with the declaration the checkers read."""
        if self.cuts_running_tasks:
            return {**effect, "cuts_running_tasks": True}
        return effect
