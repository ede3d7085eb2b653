"""Exploration: Hypothesis draws fault schedules, real runs judge them, a failure shrinks to a reproducer.

Modules: `target` (what a failure is, and "the same way"), `reproducer` (the minimal failing
schedule as ``reproducer.json``, and `replay`), `search` (the exploration over real runs).
The ``celery-chaos explore`` / ``replay`` commands are in `harness.cli`.

Responsibility: drive `harness.faults.generate.find_failing_schedule` over real runs
(`harness.run.run_deployment`) of a deployed system, decide when a run "fails the same way" as the first failure, keep the
exploration within a time budget, and write the minimal failing schedule as a reproducer
(``reproducer.json``: the schedule, the seed, the variant, the run options, the failure and
the command that replays it). `replay` runs a reproducer again.

What a failure is: a checker whose verdict is false, or unknown with violations (a fault
that never bit is unknown without violations: not a failure). A run in which the harness
could not heal a fault is not judged at all. The first failing run sets
the target: its worst checker and that checker's violation kinds (``duplicate_effect``...).
Later runs fail the same way when that checker fails with one of those violation kinds; a
run failing in another way is logged and counts as a pass, so the shrinker keeps one bug.

Time: each real run takes 10 to 20 s. Generation and Hypothesis's shrinking stop using real
runs after ``time_budget_s`` (the smallest failing schedule so far is kept); then at most
``max_faults`` runs try deleting each remaining fault, and ``confirm`` runs replay the
result (trying at most three candidates, smallest first) to check it reproduces.

Example:
    >>> from sample_system.deploy import prepare                                     # doctest: +SKIP
    >>> result = explore(prepare, stack, variant={"idempotent_effects": False},       # doctest: +SKIP
    ...                  space=FaultSpace(kinds=("kill_worker", "reset_peer"), roles=("worker_broker",)),
    ...                  max_examples=8, seed=1, out_dir="out/explore")
    >>> print(result.summary())                                                       # doctest: +SKIP
    >>> replay("out/explore/reproducer.json", stack).valid                            # doctest: +SKIP
    <Validity.FALSE: 'false'>
"""

from __future__ import annotations

from harness.explore.reproducer import REPRODUCER, DeploymentFactory, Reproducer, replay
from harness.explore.search import ExploreResult, explore
from harness.explore.target import Target, failing_verdicts

__all__ = ["REPRODUCER", "DeploymentFactory", "ExploreResult", "Reproducer", "Target", "explore", "failing_verdicts",
           "replay"]
