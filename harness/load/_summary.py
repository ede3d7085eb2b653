"""Inside a Locust process: write this process's request statistics to a JSON file when Locust quits.

Responsibility: listeners on Locust's events that make every Locust process of a run (a local
runner, a master, each worker) write ``<dir>/summary.<role>.<pid>.json`` in
``harness.load.stats.SUMMARY_FORMAT`` when it quits; the runner merges them.

Why each worker writes its own: a worker resets its statistics after every report to the
master, and the master waits only half a second for the workers' last reports when the run
time ends, less than a worker needs to let its in-flight submits finish (``--stop-timeout``),
so the master's totals can miss the last seconds. A worker therefore keeps a copy of every
report it sends (``report_to_master``) and writes their sum. Locust's ``--json-file`` is no
substitute: with ``--processes`` the forked workers keep the option and overwrite the
master's file with their reset statistics.

Imported only by `harness.load._locust_main` (after Locust's monkey-patching).

Example (what `_locust_main` does)::

    import locust
    install_summary_writer(locust.events, "/tmp/run")
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.load.stats import ENTRY_KEYS, SUMMARY_FORMAT, merge_entries, merge_errors


def _entry_of(e: Any) -> dict[str, Any]:
    """A Locust StatsEntry as a plain dict (the keys of its own serialisation, dict keys as str)."""
    d = {k: getattr(e, k, None) for k in ENTRY_KEYS}
    return _normalise(d)


def _normalise(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: d.get(k) for k in ENTRY_KEYS}
    for k in ("response_times", "num_reqs_per_sec", "num_fail_per_sec"):
        out[k] = {str(kk): int(v) for kk, v in (out[k] or {}).items()}
    return out


def _role(runner: Any) -> str:
    name = type(runner).__name__
    return {"WorkerRunner": "worker", "MasterRunner": "master"}.get(name, "local")


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _ProcessSummary:
    """The statistics one Locust process accounts for, and its file."""

    def __init__(self, environment: Any, runner: Any, directory: Path) -> None:
        self.environment = environment
        self.runner = runner
        self.role = _role(runner)
        self.directory = directory
        self.peak_users = 0
        self.workers = 0
        # A worker's own copy of everything it reported (its live stats are reset on each report).
        self.reported_entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.reported_total: dict[str, Any] | None = None
        self.reported_errors: list[dict[str, Any]] = []

    def _own_users(self) -> int:
        return int(getattr(self.runner, "user_count", 0) or 0)

    def on_spawned(self, user_count: int = 0, **_: Any) -> None:
        # On a worker the event carries the run's total; count this process's own users instead.
        # A master may fire it before every worker reported, so its count is a lower bound.
        seen = self._own_users() if self.role == "worker" else int(user_count or 0)
        self.peak_users = max(self.peak_users, seen)
        if self.role == "master":
            self.workers = max(self.workers, int(getattr(self.runner, "worker_count", 0) or 0))

    def on_report(self, client_id: str = "", data: dict[str, Any] | None = None, **_: Any) -> None:
        self.peak_users = max(self.peak_users, self._own_users())
        if not data:
            return
        for e in data.get("stats") or ():
            n = _normalise(e)
            key = (str(n.get("name")), str(n.get("method") or ""))
            self.reported_entries[key] = merge_entries(self.reported_entries.get(key), n)
        if data.get("stats_total"):
            self.reported_total = merge_entries(self.reported_total, _normalise(data["stats_total"]))
        errors = [{"method": v.get("method") or "", "name": v.get("name"), "error": str(v.get("error")),
                   "occurrences": int(v.get("occurrences") or 0)} for v in (data.get("errors") or {}).values()]
        self.reported_errors = merge_errors(self.reported_errors, errors)

    def summary(self) -> dict[str, Any]:
        self.peak_users = max(self.peak_users, self._own_users())
        stats = self.runner.stats
        live_entries = [_entry_of(e) for e in stats.entries.values() if e.num_requests or e.num_failures]
        live_total = _entry_of(stats.total)
        live_errors = [{"method": e.method or "", "name": e.name, "error": str(e.error),
                        "occurrences": int(e.occurrences)} for e in stats.errors.values()]
        if self.role == "worker":
            # Reported so far plus what came after the last report (a worker stopped by a signal
            # sends no final report); live statistics were reset at each report, so nothing counts twice.
            merged = dict(self.reported_entries)
            for e in live_entries:
                key = (str(e.get("name")), str(e.get("method") or ""))
                merged[key] = merge_entries(merged.get(key), e)
            entries = list(merged.values())
            total = merge_entries(self.reported_total, live_total)
            errors = merge_errors(self.reported_errors, live_errors)
        else:
            entries, total, errors = live_entries, live_total, live_errors
        return {"format": SUMMARY_FORMAT, "role": self.role, "pid": os.getpid(), "peak_users": self.peak_users,
                "workers": self.workers, "entries": entries, "total": total, "errors": errors}

    def on_quit(self, **_: Any) -> None:
        _write_atomically(self.directory / f"summary.{self.role}.{os.getpid()}.json", self.summary())


def install_summary_writer(events: Any, directory: str | Path) -> None:
    """Arrange for this Locust process (and the workers it forks) to write its summary into `directory`."""
    target = Path(directory)

    def on_init(environment: Any, runner: Any = None, **_: Any) -> None:
        if runner is None:
            return
        ps = _ProcessSummary(environment, runner, target)
        environment.events.spawning_complete.add_listener(ps.on_spawned)
        if ps.role == "worker":
            environment.events.report_to_master.add_listener(ps.on_report)
        # `quit` comes after the runner stopped and (on a master) collected the last reports.
        environment.events.quit.add_listener(ps.on_quit)

    events.init.add_listener(on_init)
