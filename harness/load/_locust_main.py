"""Entry point of a Locust process started by the harness: Locust's own CLI plus the summary writer.

Responsibility: ``python -m harness.load._locust_main <locust options>`` behaves exactly like
``locust <locust options>`` and, when ``CHAOS_LOAD_SUMMARY_DIR`` names a directory, makes every
Locust process write its statistics there on quit (`harness.load._summary`). Only this process imports Locust,
so gevent's monkey-patching never reaches the harness or pytest.

Nothing of the harness that touches sockets or threads may be imported before ``import locust``:
Locust patches the standard library on import and modules imported earlier keep unpatched
references. (``harness/__init__`` and ``harness/load/__init__`` import nothing eagerly.)

Example::

    CHAOS_LOAD_SUMMARY_DIR=/tmp/run python -m harness.load._locust_main -f loadtests/locustfile.py \\
        --headless -u 2 -r 2 -t 5s
"""

from __future__ import annotations

import os
import sys

ENV_SUMMARY_DIR = "CHAOS_LOAD_SUMMARY_DIR"


def main(argv: list[str] | None = None) -> None:
    import locust  # monkey-patches the standard library for gevent: first thing
    from locust.main import main as locust_main

    from harness.load._summary import install_summary_writer

    summary_dir = os.environ.get(ENV_SUMMARY_DIR)
    if summary_dir:
        install_summary_writer(locust.events, summary_dir)
    sys.argv = ["locust", *(sys.argv[1:] if argv is None else argv)]
    locust_main()


if __name__ == "__main__":
    main()
