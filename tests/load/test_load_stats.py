"""harness.load.stats: quantiles of Locust's histogram and merging the summaries of a distributed run."""

from __future__ import annotations

import pytest

from harness.load.stats import (
    SUMMARY_FORMAT,
    LoadResult,
    histogram_quantile,
    load_result_from_summaries,
    load_result_from_summary,
    merge_entries,
    merge_errors,
)


def entry(name: str, requests: int, failures: int = 0, *, times: dict[str, int] | None = None,
          per_sec: dict[str, int] | None = None, start: float = 100.0, last: float = 104.0) -> dict:
    times = times if times is not None else {"10": requests}
    return {"name": name, "method": "publish" if name != "Aggregated" else "", "num_requests": requests,
            "num_none_requests": 0, "num_failures": failures,
            "total_response_time": float(sum(int(k) * v for k, v in times.items())),
            "max_response_time": float(max((int(k) for k in times), default=0)),
            "min_response_time": float(min((int(k) for k in times), default=0)), "total_content_length": 0,
            "response_times": times, "num_reqs_per_sec": per_sec or ({"100": requests} if requests else {}),
            "num_fail_per_sec": {"100": failures} if failures else {}, "start_time": start,
            "last_request_timestamp": last}


def summary(role: str, entries: list[dict], *, workers: int = 0, peak_users: int = 0, errors=()) -> dict:
    total = None
    for e in entries:
        total = merge_entries(total, {**e, "name": "Aggregated", "method": ""})
    return {"format": SUMMARY_FORMAT, "role": role, "pid": 1, "peak_users": peak_users, "workers": workers,
            "entries": entries, "total": total or entry("Aggregated", 0, times={}), "errors": list(errors)}


@pytest.mark.parametrize(("hist", "q", "expected"), [
    ({5: 1}, 0.5, 5.0),
    ({5: 1}, 0.99, 5.0),
    ({1: 50, 2: 50}, 0.5, 1.0),     # nearest rank: the 50th of 100 is still 1
    ({1: 50, 2: 50}, 0.51, 2.0),
    ({1: 99, 300: 1}, 0.99, 1.0),
    ({1: 98, 300: 2}, 0.99, 300.0),
    ({"20": 1, "3": 1, "100": 1}, 1.0, 100.0),   # keys as JSON gives them, unordered
    ({1: 0, 7: 2}, 0.0, 7.0),       # zero counts are not values
])
def test_histogram_quantile_is_nearest_rank(hist, q, expected) -> None:
    assert histogram_quantile(hist, q) == expected


def test_histogram_quantile_of_nothing_is_none_and_bad_q_is_rejected() -> None:
    assert histogram_quantile({}, 0.5) is None
    with pytest.raises(ValueError, match="within"):
        histogram_quantile({1: 1}, 99)


def test_merge_entries_adds_counts_and_histograms_and_keeps_extremes() -> None:
    a = entry("order", 2, 1, times={"10": 1, "30": 1}, per_sec={"100": 2}, start=100.0, last=101.0)
    b = entry("order", 3, 0, times={"10": 2, "50": 1}, per_sec={"100": 1, "101": 2}, start=99.0, last=103.0)
    m = merge_entries(a, b)
    assert (m["num_requests"], m["num_failures"]) == (5, 1)
    assert m["response_times"] == {"10": 3, "30": 1, "50": 1}
    assert m["num_reqs_per_sec"] == {"100": 3, "101": 2}
    assert (m["start_time"], m["last_request_timestamp"]) == (99.0, 103.0)
    assert (m["min_response_time"], m["max_response_time"]) == (10.0, 50.0)
    assert merge_entries(None, a) == {**a}


def test_merge_errors_groups_by_request_and_message() -> None:
    e1 = {"method": "publish", "name": "order", "error": "ConnectionError('x')", "occurrences": 2}
    e2 = {"method": "publish", "name": "scan", "error": "ConnectionError('x')", "occurrences": 1}
    merged = merge_errors([e1], [e2, dict(e1)])
    assert sorted((e["name"], e["occurrences"]) for e in merged) == [("order", 4), ("scan", 1)]


def test_single_process_summary_gives_rate_latency_and_per_second_series() -> None:
    s = summary("local", [entry("order", 8, 2, times={"10": 6, "200": 2}, per_sec={"100": 5, "102": 3})],
                peak_users=4, errors=[{"method": "publish", "name": "order", "error": "E", "occurrences": 2}])
    r = load_result_from_summary(s, exit_code=1, log_tail="tail")
    assert (r.complete, r.exit_code, r.requests, r.failures, r.ok) == (True, 1, 8, 2, 6)
    assert r.duration_s == 4.0 and r.rate_per_s == 2.0
    assert (r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.max) == (10.0, 200.0, 200.0)
    assert r.per_second == ((100, 5, 2), (102, 3, 0))
    assert r.for_name("order").failures == 2
    assert r.errors[0].occurrences == 2 and r.peak_users == 4 and r.workers == 0
    with pytest.raises(KeyError, match="names"):
        r.for_name("scan")


def test_distributed_counts_come_from_every_worker_not_the_masters_late_copy() -> None:
    # The master missed the last reports (its totals are lower); each worker holds all it published.
    master = summary("master", [entry("order", 3)], workers=2, peak_users=6)
    w1 = summary("worker", [entry("order", 4), entry("scan", 1)])
    w2 = summary("worker", [entry("order", 5)])
    r = load_result_from_summaries([master, w1, w2], exit_code=0)
    assert r.requests == 10 and r.for_name("order").requests == 9 and r.for_name("scan").requests == 1
    assert (r.workers, r.peak_users) == (2, 6)


def test_a_missing_worker_summary_falls_back_to_the_masters_totals() -> None:
    master = summary("master", [entry("order", 7)], workers=2, peak_users=2)
    w1 = summary("worker", [entry("order", 4)])
    assert load_result_from_summaries([master, w1], exit_code=0).requests == 7


def test_empty_run_and_foreign_files() -> None:
    r = load_result_from_summary(summary("local", []), exit_code=0)
    assert (r.requests, r.rate_per_s, r.latency_ms.p99, r.per_second) == (0, 0.0, None, ())
    with pytest.raises(ValueError, match="not a load summary"):
        load_result_from_summary({"format": "locust-json"}, exit_code=0)
    with pytest.raises(ValueError, match="no summaries"):
        load_result_from_summaries([], exit_code=0)


def test_load_result_round_trips_through_a_dict() -> None:
    r = load_result_from_summary(summary("local", [entry("order", 3, 1)], peak_users=1,
                                         errors=[{"method": "publish", "name": "order", "error": "E",
                                                  "occurrences": 1}]), exit_code=1)
    assert LoadResult.from_dict(r.to_dict()) == r


def test_users_and_workers_come_from_the_workers_when_the_master_lags() -> None:
    # The master fired spawning_complete before any worker reported: it saw 0 users and 1 worker.
    master = summary("master", [], workers=1, peak_users=0)
    w1 = summary("worker", [entry("order", 2)], peak_users=2)
    w2 = summary("worker", [entry("order", 1)], peak_users=3)
    r = load_result_from_summaries([master, w1, w2], exit_code=0)
    assert (r.peak_users, r.workers, r.requests) == (5, 2, 3)
