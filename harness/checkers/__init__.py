"""Checkers: pure functions from a history (and what the configuration allows) to verdicts.

Responsibility: the public surface of harness/checkers. Each checker is
``check_xxx(history: Sequence[Op] | HistoryIndex, exp: Expectations) -> Verdict``; they are
composed by name with `check_all`, which indexes the history once, runs each checker and turns
a crash into an ``unknown`` verdict carrying the traceback (a broken checker never kills the
report). `overall` folds verdicts true < unknown < false.

Built-in checkers (`CHECKERS`): ``lost_tasks``, ``effects``, ``duplicates``, ``redelivery``,
``retries``, ``dlq``, ``chords``, ``rate_limits``, ``latency``, ``recovery``, ``liveness``,
``acks``, ``results``.
`default_checkers(exp, ix)` picks those the claim, the expectations and the history ask for.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "producer-1", OpType.INVOKE, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...      Op(1, 1, "producer-1", OpType.OK, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...      Op(2, 2, "w1.child-7", OpType.INVOKE, F.EXECUTE, {"task_id": "t1"}),
    ...      Op(3, 3, "w1.child-7", OpType.OK, F.EXECUTE, {"task_id": "t1"})]
    >>> verdicts = check_all(h, Expectations(require_fault_bite=False), ["lost_tasks", "liveness"])
    >>> {name: v.valid.value for name, v in verdicts.items()}, overall(verdicts).value
    ({'lost_tasks': 'true', 'liveness': 'true'}, 'true')
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Union

from harness.checkers.acks import check_acks, has_acks
from harness.checkers.chords import check_chords
from harness.checkers.claim import Claim
from harness.checkers.dlq import check_dlq
from harness.checkers.duplicates import check_duplicates
from harness.checkers.effects import check_effects
from harness.checkers.expectations import Expectations, RetryPolicy
from harness.checkers.index import HistoryIndex, build_index
from harness.checkers.latency import check_latency
from harness.checkers.liveness import check_liveness
from harness.checkers.lost_tasks import check_lost_tasks
from harness.checkers.rate_limits import check_rate_limits
from harness.checkers.recovery import check_recovery
from harness.checkers.redelivery import check_redelivery
from harness.checkers.results import check_results, has_results
from harness.checkers.retries import check_retries
from harness.checkers.verdict import Validity, Verdict, merge_valid
from harness.errors import ConfigError
from harness.gcpause import gc_paused
from harness.history.ops import Op

__all__ = [
    "CHECKERS",
    "Checker",
    "Claim",
    "Expectations",
    "HistoryIndex",
    "RetryPolicy",
    "Validity",
    "Verdict",
    "build_index",
    "check_acks",
    "check_all",
    "check_chords",
    "check_dlq",
    "check_duplicates",
    "check_effects",
    "check_latency",
    "check_liveness",
    "check_lost_tasks",
    "check_rate_limits",
    "check_recovery",
    "check_redelivery",
    "check_results",
    "check_retries",
    "default_checkers",
    "merge_valid",
    "overall",
]

Checker = Callable[[Union[Sequence[Op], HistoryIndex], Expectations], Verdict]  # noqa: UP007 - runtime alias

CHECKERS: Mapping[str, Checker] = {
    "lost_tasks": check_lost_tasks,
    "effects": check_effects,
    "duplicates": check_duplicates,
    "redelivery": check_redelivery,
    "retries": check_retries,
    "dlq": check_dlq,
    "chords": check_chords,
    "rate_limits": check_rate_limits,
    "latency": check_latency,
    "recovery": check_recovery,
    "liveness": check_liveness,
    "acks": check_acks,
    "results": check_results,
}


def default_checkers(exp: Expectations, ix: HistoryIndex | None = None) -> dict[str, Checker]:
    """The built-in checkers `exp` (and the history's index `ix`, when given) ask for.

    Always lost_tasks, duplicates, latency, recovery and liveness; effects when the units are
    known (``exp.declared_effects``); redelivery under an at-least-once claim; retries with a
    retry policy; dlq with a DLQ or keys expected there; chords when ``exp.chords`` or the
    history holds chords; rate_limits when rates are configured; acks when the history holds
    the workers' ``ack`` ops; results when it holds a client's ``result`` ops.

    >>> sorted(default_checkers(Expectations()))
    ['duplicates', 'latency', 'liveness', 'lost_tasks', 'recovery', 'redelivery']
    """
    names = ["lost_tasks"]
    if exp.declared_effects:
        names.append("effects")
    names.append("duplicates")
    if not exp.claim.allows_loss:
        names.append("redelivery")
    if exp.retry_policy is not None or exp.retry_policies:
        names.append("retries")
    if exp.dead_letter_queue or "dlq" in exp.expected_outcomes.values():
        names.append("dlq")
    if exp.chords or (ix is not None and ix.chords):
        names.append("chords")
    if exp.rate_limits:
        names.append("rate_limits")
    names += ["latency", "recovery", "liveness"]
    if ix is not None and has_acks(ix):
        names.append("acks")
    if ix is not None and has_results(ix):
        names.append("results")
    return {n: CHECKERS[n] for n in names}


def _resolve(checkers: Mapping[str, Checker] | Iterable[str] | None, exp: Expectations) -> dict[str, Checker]:
    if checkers is None:
        return default_checkers(exp)
    if isinstance(checkers, Mapping):
        out = dict(checkers)
    else:
        if isinstance(checkers, str):
            raise ConfigError(f"checkers must be names in a list, not one string: pass [{checkers!r}]")
        out = {}
        for name in checkers:
            if name not in CHECKERS:
                raise ConfigError(f"unknown checker {name!r}: use one of {sorted(CHECKERS)} "
                                  "or pass a mapping of name -> callable")
            out[name] = CHECKERS[name]
    for name, fn in out.items():
        if not callable(fn):
            raise ConfigError(f"checker {name!r} is a {type(fn).__name__}, not a callable "
                              "(history, expectations) -> Verdict")
    return out


def check_all(history: Sequence[Op] | HistoryIndex, exp: Expectations | None = None,
              checkers: Mapping[str, Checker] | Iterable[str] | None = None) -> dict[str, Verdict]:
    """Run `checkers` (names or name -> callable; default: `default_checkers(exp)`) on `history`.

    The history is indexed once and shared. A checker that raises, or returns something that is
    not a `Verdict`, yields ``Verdict(name, UNKNOWN, error=...)`` instead of failing the run.

    Example:
        >>> def broken(history, exp):
        ...     raise RuntimeError("boom")
        >>> v = check_all([], Expectations(), {"broken": broken})["broken"]
        >>> v.valid.value, "boom" in v.error
        ('unknown', True)
    """
    exp = exp or Expectations()
    # The index and the checkers build millions of long-lived acyclic objects on a large
    # history; automatic collections would rescan them again and again (a third of the time).
    with gc_paused():
        return _check_all(history, exp, checkers)


def _check_all(history: Sequence[Op] | HistoryIndex, exp: Expectations,
               checkers: Mapping[str, Checker] | Iterable[str] | None) -> dict[str, Verdict]:
    try:
        ix = history if isinstance(history, HistoryIndex) and history.run_id == exp.run_id \
            and history.kill_fault_kinds == exp.kill_fault_kinds else \
            build_index(history.history if isinstance(history, HistoryIndex) else history,
                        run_id=exp.run_id, kill_fault_kinds=exp.kill_fault_kinds)
    except Exception:  # the index is every checker's input: each reports the failure
        err = traceback.format_exc()
        return {name: Verdict(name, Validity.UNKNOWN, notes=("indexing the history crashed",), error=err)
                for name in _resolve(checkers, exp)}
    selected = default_checkers(exp, ix) if checkers is None else _resolve(checkers, exp)
    out: dict[str, Verdict] = {}
    for name, fn in selected.items():
        try:
            v = fn(ix, exp)
            if not isinstance(v, Verdict):
                raise TypeError(f"checker {name!r} returned {type(v).__name__}, expected a Verdict")
            if v.checker != name:
                v = Verdict(name, v.valid, v.counts, v.counterexamples, v.notes, v.metrics, v.error)
        except Exception:
            v = Verdict(name, Validity.UNKNOWN, notes=(f"checker {name!r} crashed",), error=traceback.format_exc())
        out[name] = v
    return out


def overall(verdicts: Mapping[str, Verdict] | Iterable[Verdict]) -> Validity:
    """The run's validity: the worst of `verdicts` (false > unknown > true; true when empty).

    >>> overall([Verdict("a", Validity.TRUE), Verdict("b", Validity.UNKNOWN)])
    <Validity.UNKNOWN: 'unknown'>
    """
    vs = verdicts.values() if isinstance(verdicts, Mapping) else verdicts
    return merge_valid(v.valid for v in vs)
