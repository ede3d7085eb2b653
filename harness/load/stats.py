"""What a Locust run measured, as frozen data: publish counts, rates, latency quantiles, per-second series.

Responsibility: parse the summary a Locust process writes when it quits (see
`harness.load._summary`; Locust's own request statistics, merged from every worker in
distributed mode) into `LoadResult`, and the pure arithmetic behind it (quantiles of Locust's
response-time histogram). Publish latency only: completion latency is the history's business.

Example:
    >>> summary = {"format": SUMMARY_FORMAT, "peak_users": 2, "workers": 0,
    ...            "total": {"name": "Aggregated", "method": "", "num_requests": 4, "num_failures": 1,
    ...                      "total_response_time": 40.0, "max_response_time": 20.0,
    ...                      "response_times": {"5": 2, "10": 1, "20": 1},
    ...                      "num_reqs_per_sec": {"100": 3, "101": 1}, "num_fail_per_sec": {"101": 1},
    ...                      "start_time": 100.0, "last_request_timestamp": 102.0},
    ...            "entries": [], "errors": []}
    >>> r = load_result_from_summary(summary, exit_code=0)
    >>> r.requests, r.ok, r.rate_per_s, r.latency_ms.p50, r.latency_ms.p99
    (4, 3, 2.0, 5.0, 20.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ENTRY_KEYS",
    "SUMMARY_FORMAT",
    "ErrorStat",
    "LatencySummary",
    "LoadResult",
    "RequestStats",
    "histogram_quantile",
    "load_result_from_summaries",
    "load_result_from_summary",
    "merge_entries",
    "merge_errors",
]

SUMMARY_FORMAT = "celery-chaos-load-summary/1"
QUANTILES = (0.5, 0.9, 0.95, 0.99)

#: The fields of one statistics entry in a summary (Locust's own StatsEntry serialisation).
ENTRY_KEYS = ("name", "method", "num_requests", "num_none_requests", "num_failures", "total_response_time",
              "max_response_time", "min_response_time", "total_content_length", "response_times",
              "num_reqs_per_sec", "num_fail_per_sec", "start_time", "last_request_timestamp")
_SUMMED = ("num_requests", "num_none_requests", "num_failures", "total_response_time", "total_content_length")
_HISTOGRAMS = ("response_times", "num_reqs_per_sec", "num_fail_per_sec")


def _pick(a: Any, b: Any, fn: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def merge_entries(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics of two entries of the same request combined (counts and histograms added).

    >>> m = merge_entries({"name": "x", "num_requests": 1, "response_times": {"5": 1}, "start_time": 10.0},
    ...                   {"name": "x", "num_requests": 2, "response_times": {"5": 1, "7": 1}, "start_time": 9.0})
    >>> m["num_requests"], m["response_times"], m["start_time"]
    (3, {'5': 2, '7': 1}, 9.0)
    """
    if a is None:
        out = {k: b.get(k) for k in ENTRY_KEYS}
        for k in _HISTOGRAMS:
            out[k] = {str(kk): int(v) for kk, v in (b.get(k) or {}).items()}
        return out
    out = {"name": a.get("name", b.get("name")), "method": a.get("method", b.get("method"))}
    for k in _SUMMED:
        out[k] = (a.get(k) or 0) + (b.get(k) or 0)
    out["max_response_time"] = _pick(a.get("max_response_time"), b.get("max_response_time"), max)
    out["min_response_time"] = _pick(a.get("min_response_time"), b.get("min_response_time"), min)
    out["start_time"] = _pick(a.get("start_time"), b.get("start_time"), min)
    out["last_request_timestamp"] = _pick(a.get("last_request_timestamp"), b.get("last_request_timestamp"), max)
    for k in _HISTOGRAMS:
        h = {str(kk): int(v) for kk, v in (a.get(k) or {}).items()}
        for kk, v in (b.get(k) or {}).items():
            h[str(kk)] = h.get(str(kk), 0) + int(v)
        out[k] = h
    return out


def merge_errors(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Error lists combined by (method, name, error), occurrences added.

    >>> merge_errors([{"method": "publish", "name": "x", "error": "E", "occurrences": 1}],
    ...              [{"method": "publish", "name": "x", "error": "E", "occurrences": 2}])[0]["occurrences"]
    3
    """
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in [*a, *b]:
        key = (str(e.get("method") or ""), str(e.get("name")), str(e.get("error")))
        if key in merged:
            merged[key]["occurrences"] += int(e.get("occurrences") or 0)
        else:
            merged[key] = {"method": key[0], "name": key[1], "error": key[2],
                           "occurrences": int(e.get("occurrences") or 0)}
    return list(merged.values())


def histogram_quantile(histogram: Mapping[Any, int], q: float) -> float | None:
    """The nearest-rank `q` quantile of a ``{value: count}`` histogram (None when it is empty).

    Locust keeps response times this way (milliseconds, rounded to 2 significant digits above
    100 ms), so the quantile is exact up to that rounding.

    >>> histogram_quantile({1: 98, 50: 1, 900: 1}, 0.99), histogram_quantile({}, 0.5)
    (50.0, None)
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q={q} must be within [0, 1], e.g. 0.99 for p99")
    items = sorted((float(k), int(c)) for k, c in histogram.items() if int(c) > 0)
    n = sum(c for _, c in items)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for value, count in items:
        seen += count
        if seen >= rank:
            return value
    return items[-1][0]  # pragma: no cover - rank <= n always stops the loop


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Publish latency in milliseconds (None when nothing was published)."""

    count: int = 0
    avg: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> LatencySummary:
        hist = entry.get("response_times") or {}
        n = int(entry.get("num_requests") or 0)
        if n == 0 or not hist:
            return cls(count=n)
        total = float(entry.get("total_response_time") or 0.0)
        qs = [histogram_quantile(hist, q) for q in QUANTILES]
        mx = entry.get("max_response_time")
        return cls(count=n, avg=total / n, p50=qs[0], p90=qs[1], p95=qs[2], p99=qs[3],
                   max=None if mx is None else float(mx))


@dataclass(frozen=True, slots=True)
class RequestStats:
    """Counts and publish latency for one request name (the workload kind) of a run."""

    name: str
    method: str
    requests: int
    failures: int
    latency_ms: LatencySummary


@dataclass(frozen=True, slots=True)
class ErrorStat:
    """One distinct publish error and how often it happened."""

    method: str
    name: str
    error: str
    occurrences: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The outcome of one Locust run (all processes merged).

    Attributes:
        complete: the summary was written (False: Locust died before quitting; counts are 0).
        exit_code: Locust's exit code (1 when a request failed, Locust's default), None if killed.
        requests / failures: submits attempted / raised (``ok`` = the difference).
        duration_s: first to last request; ``rate_per_s`` = requests / duration_s.
        latency_ms: publish latency quantiles over every request.
        per_second: ``(unix second, requests, failures)`` for every second with a request.
        by_name: the same per request name (one per workload kind).
        errors: distinct errors with counts.
        peak_users / workers: users at full spawn; worker processes (0: one process).
        log_tail: the last lines of Locust's output (for error messages).

    Example:
        >>> LoadResult(complete=True, exit_code=0, requests=3, failures=0).ok
        3
    """

    complete: bool
    exit_code: int | None
    requests: int = 0
    failures: int = 0
    duration_s: float = 0.0
    rate_per_s: float = 0.0
    latency_ms: LatencySummary = field(default_factory=LatencySummary)
    per_second: tuple[tuple[int, int, int], ...] = ()
    by_name: tuple[RequestStats, ...] = ()
    errors: tuple[ErrorStat, ...] = ()
    peak_users: int = 0
    workers: int = 0
    log_tail: str = ""

    @property
    def ok(self) -> int:
        """Submits that returned without raising."""
        return self.requests - self.failures

    def for_name(self, name: str) -> RequestStats:
        """The stats of one request name; KeyError lists the names there are."""
        for s in self.by_name:
            if s.name == name:
                return s
        raise KeyError(f"no requests named {name!r} in this run; names: {[s.name for s in self.by_name]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoadResult:
        """Read `to_dict`'s output back.

        >>> r = LoadResult(complete=True, exit_code=0, requests=1, per_second=((5, 1, 0),))
        >>> LoadResult.from_dict(r.to_dict()) == r
        True
        """
        return cls(
            complete=bool(d["complete"]), exit_code=d.get("exit_code"),
            requests=int(d.get("requests", 0)), failures=int(d.get("failures", 0)),
            duration_s=float(d.get("duration_s", 0.0)), rate_per_s=float(d.get("rate_per_s", 0.0)),
            latency_ms=LatencySummary(**(d.get("latency_ms") or {})),
            per_second=tuple((int(s), int(r), int(f)) for s, r, f in d.get("per_second") or ()),
            by_name=tuple(RequestStats(name=b["name"], method=b["method"], requests=int(b["requests"]),
                                       failures=int(b["failures"]), latency_ms=LatencySummary(**b["latency_ms"]))
                          for b in d.get("by_name") or ()),
            errors=tuple(ErrorStat(**e) for e in d.get("errors") or ()),
            peak_users=int(d.get("peak_users", 0)), workers=int(d.get("workers", 0)),
            log_tail=str(d.get("log_tail", "")),
        )


def load_result_from_summary(summary: Mapping[str, Any], *, exit_code: int | None, log_tail: str = "") -> LoadResult:
    """Build a `LoadResult` from one summary dict (see the module example)."""
    return load_result_from_summaries([summary], exit_code=exit_code, log_tail=log_tail)


def load_result_from_summaries(summaries: list[Mapping[str, Any]], *, exit_code: int | None,
                               log_tail: str = "") -> LoadResult:
    """Build one `LoadResult` from the summaries of every Locust process of a run.

    Counts come from the workers' summaries when every worker wrote one (each holds everything
    that worker published), else from the master's or the local runner's. Peak users: the
    larger of the master's count and the sum of each worker's own peak; workers: the larger of
    the master's count and the number of worker summaries.
    """
    for s in summaries:
        fmt = s.get("format")
        if fmt != SUMMARY_FORMAT:
            raise ValueError(f"not a load summary: format={fmt!r}, expected {SUMMARY_FORMAT!r}")
    if not summaries:
        raise ValueError("no summaries to build a LoadResult from")
    workers = [s for s in summaries if s.get("role") == "worker"]
    leaders = [s for s in summaries if s.get("role") != "worker"]
    expected_workers = max((int(s.get("workers") or 0) for s in leaders), default=0)
    # A worker killed before it wrote its summary: the master's totals are then the better lower bound.
    counted = workers if workers and (not leaders or len(workers) >= expected_workers) else (leaders or workers)
    total: dict[str, Any] | None = None
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    for s in counted:
        total = merge_entries(total, s.get("total") or {})
        for e in s.get("entries") or ():
            key = (str(e.get("name")), str(e.get("method") or ""))
            entries[key] = merge_entries(entries.get(key), e)
        errors = merge_errors(errors, list(s.get("errors") or ()))
    assert total is not None
    requests = int(total.get("num_requests") or 0)
    failures = int(total.get("num_failures") or 0)
    start, last = total.get("start_time"), total.get("last_request_timestamp")
    duration = max(0.0, float(last) - float(start)) if start is not None and last is not None else 0.0
    reqs = {int(k): int(v) for k, v in (total.get("num_reqs_per_sec") or {}).items()}
    fails = {int(k): int(v) for k, v in (total.get("num_fail_per_sec") or {}).items()}
    per_second = tuple((sec, reqs.get(sec, 0), fails.get(sec, 0)) for sec in sorted(set(reqs) | set(fails)))
    by_name = tuple(
        RequestStats(name=name, method=method, requests=int(e.get("num_requests") or 0),
                     failures=int(e.get("num_failures") or 0), latency_ms=LatencySummary.from_entry(e))
        for (name, method), e in sorted(entries.items())
    )
    return LoadResult(
        complete=True, exit_code=exit_code, requests=requests, failures=failures, duration_s=duration,
        rate_per_s=requests / duration if duration > 0 else 0.0, latency_ms=LatencySummary.from_entry(total),
        per_second=per_second, by_name=by_name,
        errors=tuple(ErrorStat(**e) for e in sorted(errors, key=lambda e: (e["name"], e["error"]))),
        # A master's own counts lag its workers' reports: the workers' sum is the better figure.
        peak_users=max(max((int(s.get("peak_users") or 0) for s in leaders), default=0),
                       sum(int(s.get("peak_users") or 0) for s in workers)),
        workers=max(expected_workers, len(workers)),
        log_tail=log_tail,
    )
