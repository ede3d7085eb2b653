"""Child processes the harness starts, and the reaper that ends them if the harness dies.

Below every package that starts a process (`stack` servers, `workers`, the `toxiproxy` server,
`load` generators): it imports nothing of ours but `errors`, so each of them may use it without
an arrow between them.

- `managed`: `ManagedProcess` (start, wait ready, stop the process group, log tail), `free_port`;
- `freeze`: `freeze_group` (SIGSTOP, then wait until every thread is stopped), `thaw_group`;
- `reaper`: the watcher that kills what a dead harness left (``celery-chaos stack down --orphans``).

Example:
    >>> from harness.processes.managed import free_port
    >>> 0 < free_port() < 65536
    True
"""
