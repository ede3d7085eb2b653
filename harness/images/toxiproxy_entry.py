"""Entry point of chaos/toxiproxy:local: the built-in Toxiproxy server on Debian's python3.

Responsibility: run `harness.toxiproxy` with toxiproxy-server's flags, after backporting one
asyncio fix the server depends on. Standard library only (it runs in the image, beside the
copied harness/toxiproxy package).

Why the backport: on Python 3.11.0-3.11.2 (Debian bookworm ships 3.11.2) a selector socket
transport starts reading right after `connection_made()` even when the protocol paused
reading there; later 3.11 releases check `is_reading()` first. The proxy pauses a new client
socket until its upstream is connected, so on 3.11.2 the client's first bytes arrive before
the connection is wired and are lost (an AMQP or Redis handshake then hangs).

Example:
    python3 -m toxiproxy_entry -host=0.0.0.0 -port=8474
"""

from __future__ import annotations

import sys


def backport_pause_in_connection_made() -> bool:
    """Make `_SelectorTransport._add_reader` honour a pause (as 3.11.3+ does); True when patched."""
    if sys.version_info >= (3, 12) or sys.version_info < (3, 11):
        return False
    from asyncio import selector_events

    transport = selector_events._SelectorTransport  # type: ignore[attr-defined]

    def _add_reader(self, fd, callback, *args):  # type: ignore[no-untyped-def]
        if self._closing or getattr(self, "_paused", False):
            return
        self._loop._add_reader(fd, callback, *args)

    transport._add_reader = _add_reader  # type: ignore[method-assign]
    return True


def main() -> int:
    backport_pause_in_connection_made()
    from harness.toxiproxy.__main__ import main as server_main

    return int(server_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
