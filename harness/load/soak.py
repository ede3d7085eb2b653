"""Building blocks of a soak run: time series of throughput, queue depth and memory, and a leak verdict.

Responsibility: small functions a soak command composes. Pure ones turn data into series and
verdicts (`throughput_series`, `rss_slope`, `leak_verdict`, `progress_line`); probing ones read
the live system with a timeout (`queue_depths` through the broker, `rss_bytes` / `total_rss`
through psutil); `Sampler` calls probes periodically in a background thread, bounded in time
and in points.

A soak command would: start the stack, workers and a `harness.load.runner.LoadRun` for the
duration, run a `Sampler` with probes for queue depth and worker / broker RSS, apply faults
periodically, then build the report from ``throughput_series(history)``, the sampler's series
and ``leak_verdict`` for each memory series, next to the checkers' verdicts.

Example:
    >>> mem = Series("worker_rss", "bytes", tuple((t * 60.0, 100e6 + t * 2e6) for t in range(30)))
    >>> v = leak_verdict(mem)
    >>> v.valid.value, round(v.metrics["slope_bytes_per_s"])
    ('false', 33333)
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.errors import ConfigError
from harness.history.ops import F, Op, OpType

__all__ = [
    "LeakPolicy",
    "Sampler",
    "Series",
    "leak_verdict",
    "progress_line",
    "queue_depths",
    "rss_bytes",
    "rss_slope",
    "throughput_series",
    "total_rss",
]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Series:
    """A named time series: ``(seconds since the run started, value)`` points in time order.

    Example:
        >>> Series("queue_depth", "messages", ((0.0, 3.0), (5.0, 1.0))).last
        1.0
    """

    name: str
    unit: str
    points: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple((float(t), float(v)) for t, v in self.points))

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "points": [list(p) for p in self.points]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Series:
        return cls(str(d["name"]), str(d["unit"]), tuple((float(t), float(v)) for t, v in d.get("points") or ()))


# ---------------------------------------------------------------------------------------------
# throughput from the history (pure)


def throughput_series(history: Iterable[Op], *, bucket_s: float = 10.0, f: str = F.EXECUTE,
                      types: Sequence[OpType] = (OpType.OK,), start_ns: int | None = None,
                      end_ns: int | None = None, name: str | None = None) -> Series:
    """Ops per second of `f` (default: successful executions) in consecutive buckets of `bucket_s`.

    Time 0 is `start_ns` (default: the first op of the history); a point's time is its bucket's
    start; empty buckets are 0, so a stall shows as a dip. Ops outside ``[start_ns, end_ns)`` are ignored.

    >>> ops = [Op(i, 1_000_000_000 * t, "w", OpType.OK, F.EXECUTE, {}) for i, t in enumerate([0, 1, 2, 2, 25])]
    >>> throughput_series(ops, bucket_s=10).points
    ((0.0, 0.4), (10.0, 0.0), (20.0, 0.1))
    """
    if not (bucket_s > 0 and math.isfinite(bucket_s)):
        raise ConfigError(f"bucket_s={bucket_s} must be > 0 seconds")
    wanted = {OpType(t) for t in types}
    ops = list(history)
    if start_ns is None:
        start_ns = min((op.time for op in ops), default=0)
    times = [op.time for op in ops if op.f == f and op.type in wanted and op.time >= start_ns
             and (end_ns is None or op.time < end_ns)]
    label = name or f"{f}_{'_'.join(sorted(t.value for t in wanted))}_per_s"
    last_ns = end_ns if end_ns is not None else (max(times) + 1 if times else start_ns)
    n_buckets = max(0, math.ceil((last_ns - start_ns) / (bucket_s * 1e9)))
    counts = [0] * n_buckets
    for t in times:
        i = int((t - start_ns) // (bucket_s * 1e9))
        if 0 <= i < n_buckets:
            counts[i] += 1
    return Series(label, "per_s", tuple((i * bucket_s, c / bucket_s) for i, c in enumerate(counts)))


# ---------------------------------------------------------------------------------------------
# probes (live system, bounded)


def queue_depths(broker_url: str, queues: Sequence[str], *, timeout_s: float = 5.0) -> dict[str, int | None]:
    """Ready messages in each of `queues` (None for a queue that does not exist), read through the broker.

    Works for RabbitMQ (passive declare) and a Redis broker (kombu counts the list). Raises the
    broker's connection error after `timeout_s`.

    Example: ``queue_depths(stack.urls.broker_url, ["orders", "payments"])`` -> ``{"orders": 12, "payments": 0}``.
    """
    from kombu import Connection
    from kombu.exceptions import ChannelError, OperationalError

    out: dict[str, int | None] = {}
    with Connection(broker_url, connect_timeout=timeout_s, transport_options={"socket_timeout": timeout_s}) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout_s)
        for name in queues:
            channel = conn.channel()
            try:
                ok = channel.queue_declare(queue=name, passive=True)
                out[name] = int(ok.message_count)
            except (OperationalError, ChannelError, *conn.channel_errors):
                out[name] = None  # a missing queue closes an AMQP channel: use a fresh one per queue
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    return out


def rss_bytes(pid: int, *, include_children: bool = True) -> int | None:
    """Resident memory of `pid` (plus its descendants: a worker's pool children), None if it is gone.

    >>> import os
    >>> rss_bytes(os.getpid()) > 0
    True
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        if include_children:
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return None


def total_rss(pids: Iterable[int], *, include_children: bool = True) -> int | None:
    """Summed `rss_bytes` of `pids` (e.g. a RabbitMQ node and its epmd); None when none is alive."""
    values = [rss_bytes(p, include_children=include_children) for p in pids]
    alive = [v for v in values if v is not None]
    return sum(alive) if alive else None


# ---------------------------------------------------------------------------------------------
# leak verdict (pure)


def rss_slope(points: Sequence[Point]) -> tuple[float, float, float]:
    """Least-squares line through `points`: ``(slope per second, intercept, r²)``.

    r² is 0 when the values do not vary (a flat line explains nothing, and needs nothing explained).

    >>> rss_slope([(0, 10.0), (1, 12.0), (2, 14.0)])
    (2.0, 10.0, 1.0)
    """
    n = len(points)
    if n < 2:
        raise ValueError(f"a slope needs at least 2 points, got {n}")
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    stt = sum((t - mt) ** 2 for t, _ in points)
    if stt == 0:
        raise ValueError("all points have the same time: sample at different times")
    stv = sum((t - mt) * (v - mv) for t, v in points)
    svv = sum((v - mv) ** 2 for _, v in points)
    slope = stv / stt
    intercept = mv - slope * mt
    r2 = (stv * stv) / (stt * svv) if svv > 0 else 0.0
    return slope, intercept, r2


@dataclass(frozen=True, slots=True)
class LeakPolicy:
    """When a memory series counts as a leak.

    - ``warmup_fraction``: the first part of the run is ignored (caches, pools, imports filling up).
    - ``max_growth_per_hour``: fitted growth above this many bytes per hour is a leak ...
    - ``min_relative_growth``: ... if it also adds at least this fraction of the starting size over the run ...
    - ``min_r2``: ... and the growth is steady (the line explains at least this share of the variance).
    - ``min_points`` / ``min_span_s``: with less data the verdict is unknown.
    """

    warmup_fraction: float = 0.1
    max_growth_per_hour: float = 16 * 1024 * 1024
    min_relative_growth: float = 0.05
    min_r2: float = 0.6
    min_points: int = 8
    min_span_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction={self.warmup_fraction} must be within [0, 1)")
        if self.min_points < 2 or self.min_span_s <= 0:
            raise ConfigError("min_points must be >= 2 and min_span_s > 0 seconds")


def leak_verdict(series: Series, policy: LeakPolicy | None = None) -> Verdict:
    """Whether `series` (RSS in bytes over time) shows a leak: valid false = leaking, true = flat enough,
    unknown = too little data. The verdict is named ``memory_leak:<series name>`` (see the module example).
    """
    p = policy or LeakPolicy()
    checker = f"memory_leak:{series.name}"
    pts = list(series.points)
    if pts:
        t0, t1 = pts[0][0], pts[-1][0]
        pts = [pt for pt in pts if pt[0] >= t0 + p.warmup_fraction * (t1 - t0)]
    span = pts[-1][0] - pts[0][0] if len(pts) >= 2 else 0.0
    if len(pts) < p.min_points or span < p.min_span_s:
        return Verdict(checker, Validity.UNKNOWN, counts={"points": len(pts)}, metrics={"span_s": span},
                       notes=(f"too little data for a leak verdict: {len(pts)} points over {span:.0f} s after "
                              f"warm-up; need {p.min_points} points over {p.min_span_s:.0f} s (sample longer "
                              "or more often)",))
    slope, intercept, r2 = rss_slope(pts)
    start = intercept + slope * pts[0][0]
    growth = slope * span
    per_hour = slope * 3600.0
    metrics = {"slope_bytes_per_s": slope, "growth_bytes_per_hour": per_hour, "growth_bytes": growth,
               "r2": r2, "start_bytes": start, "end_bytes": intercept + slope * pts[-1][0], "span_s": span}
    leaking = per_hour > p.max_growth_per_hour and start > 0 and growth / start >= p.min_relative_growth \
        and r2 >= p.min_r2
    if leaking:
        note = (f"{series.name} grows steadily: {per_hour / 2**20:.1f} MiB/h (r²={r2:.2f}), "
                f"+{growth / 2**20:.1f} MiB ({100 * growth / start:.0f}%) over {span:.0f} s")
        return Verdict(checker, Validity.FALSE, counts={"points": len(pts)}, metrics=metrics,
                       counterexamples=({"kind": "memory_growth", "allowed": False, "series": series.name,
                                         "slope_bytes_per_s": slope, "r2": r2},), notes=(note,))
    return Verdict(checker, Validity.TRUE, counts={"points": len(pts)}, metrics=metrics,
                   notes=(f"{series.name}: {per_hour / 2**20:+.1f} MiB/h (r²={r2:.2f}), within "
                          f"{p.max_growth_per_hour / 2**20:.0f} MiB/h",))


# ---------------------------------------------------------------------------------------------
# periodic sampling and progress


Probe = Callable[[], float | None]


@dataclass
class _Track:
    unit: str
    probe: Probe
    points: list[Point] = field(default_factory=list)
    errors: int = 0
    last_error: str | None = None


class Sampler:
    """Calls each probe every `interval_s` in a background thread and keeps its series.

    A probe returns a number, or None for "no value now" (a gap); a probe that raises is
    counted in ``errors`` and leaves a gap. At most `max_points` points are kept per series
    (the oldest are dropped). Use as a context manager; ``stop()`` joins the thread.

    Example:
        >>> with Sampler({"answer": ("units", lambda: 42.0)}, interval_s=0.01) as s:
        ...     s.sample_now()
        >>> s.series()["answer"].points[0][1]
        42.0
    """

    def __init__(self, probes: Mapping[str, tuple[str, Probe]], *, interval_s: float = 5.0,
                 max_points: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ConfigError(f"interval_s={interval_s} must be > 0 seconds")
        if max_points < 2:
            raise ConfigError(f"max_points={max_points} must be >= 2")
        self.interval_s = interval_s
        self.max_points = max_points
        self._clock = clock
        self._tracks = {name: _Track(unit, probe) for name, (unit, probe) in probes.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()

    def start(self) -> Sampler:
        if self._thread is not None:
            raise RuntimeError("this Sampler is already started: create a new one for another run")
        self._t0 = self._clock()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_now()
            self._stop.wait(self.interval_s)

    def sample_now(self) -> None:
        """Take one sample of every probe now (also used by the thread)."""
        for track in self._tracks.values():
            t = self._clock() - self._t0
            try:
                value = track.probe()
            except Exception as exc:  # noqa: BLE001 - a failing probe leaves a gap, never stops sampling
                value = None
                track.errors += 1
                track.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if value is None:
                continue
            with self._lock:
                track.points.append((t, float(value)))
                if len(track.points) > self.max_points:
                    del track.points[0]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sampling and join the thread (a probe stuck beyond `timeout_s` is left to its daemon thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def series(self) -> dict[str, Series]:
        """The series so far, by probe name."""
        with self._lock:
            return {name: Series(name, tr.unit, tuple(tr.points)) for name, tr in self._tracks.items()}

    def errors(self) -> dict[str, tuple[int, str | None]]:
        """``name -> (failed probe calls, last error)`` for probes that failed at least once."""
        return {name: (tr.errors, tr.last_error) for name, tr in self._tracks.items() if tr.errors}

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def progress_line(elapsed_s: float, total_s: float, *, width: int = 30, **values: float | int | str | None) -> str:
    """A one-line text progress bar with the latest values, for a terminal (``\\r`` it in place).

    >>> progress_line(450, 1800, width=10, rate="41.8/s", depth=12)
    '[##--------]  25%  07:30/30:00  rate=41.8/s depth=12'
    """
    frac = 0.0 if total_s <= 0 else min(1.0, max(0.0, elapsed_s / total_s))
    filled = int(round(frac * width))
    extras = " ".join(f"{k}={v}" for k, v in values.items() if v is not None)
    line = f"[{'#' * filled}{'-' * (width - filled)}] {100 * frac:3.0f}%  {_mmss(elapsed_s)}/{_mmss(total_s)}"
    return f"{line}  {extras}" if extras else line


def _mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"
