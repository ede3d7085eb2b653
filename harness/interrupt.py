"""One signal policy for the long commands (certify, explore, replay, soak, stack up).

SIGINT and SIGTERM both raise `Interrupted` (a KeyboardInterrupt) in the main thread, so every
``with`` and ``finally`` on the way out heals the faults in force and tears the stack down; the
command then writes what it finished, prints one line and exits 128 + the signal number (130 for
SIGINT, 143 for SIGTERM), never with a traceback. A second signal during that teardown is
ignored: the teardown is bounded, and the reaper (harness.processes.reaper) backs it up.

A job started in the background by a shell script inherits SIGINT ignored; `install` undoes
that, so `kill -INT` stops a certification wherever it was started from.

Example:
    >>> import os, signal
    >>> install()
    >>> try:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ... except Interrupted as exc:
    ...     print(exc.signal_name, exit_code(exc))
    SIGTERM 143
    >>> restore()
"""

from __future__ import annotations

import signal
from types import FrameType

_pending: Interrupted | None = None
_previous: dict[int, object] = {}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM once `install` ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending is not None:
        return  # already tearing down: let the teardown finish
    _pending = Interrupted(signum)
    raise _pending


def install() -> None:
    """Make SIGINT and SIGTERM raise `Interrupted` (also when SIGINT was inherited ignored)."""
    global _pending
    _pending = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        _previous.setdefault(sig, signal.getsignal(sig))
        signal.signal(sig, _handler)


def restore() -> None:
    """Put back the handlers `install` replaced (for tests and embedding)."""
    global _pending
    for sig, old in _previous.items():
        signal.signal(sig, old)  # type: ignore[arg-type]
    _previous.clear()
    _pending = None


def pending() -> Interrupted | None:
    """The interrupt being handled, if a signal arrived."""
    return _pending


def exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal number: 130 for SIGINT (and a plain KeyboardInterrupt), 143 for SIGTERM."""
    got = exc if isinstance(exc, Interrupted) else _pending
    return 128 + (got.signum if got is not None else signal.SIGINT)


def signal_name(exc: BaseException | None = None) -> str:
    """'SIGINT' or 'SIGTERM': what interrupted the command."""
    got = exc if isinstance(exc, Interrupted) else _pending
    return got.signal_name if got is not None else "SIGINT"
