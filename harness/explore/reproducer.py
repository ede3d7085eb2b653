"""The minimal failing schedule and everything to run it again (``reproducer.json``), and `replay`.

Responsibility: `Reproducer` (written atomically, read back with one-line errors), the
deployment factory named by import path (``sample_system.deploy:prepare``), and `replay`: the
reproducer's schedule run again with its variant, units, pace and claim.

Example::

    result = replay("out/explore/reproducer.json", stack)
    Reproducer.read("out/explore/reproducer.json").fails_same_way(result)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import Claim
from harness.errors import ConfigError
from harness.explore.target import Target, failing_verdicts
from harness.faults.schedule import Schedule
from harness.run import RunConfig, RunResult, run_deployment
from harness.stack.base import Stack
from harness.workload import Deployment

__all__ = ["REPRODUCER", "DeploymentFactory", "Reproducer", "factory_path", "load_factory", "replay"]

DeploymentFactory = Callable[..., AbstractContextManager[Deployment]]
Log = Callable[[str], None]

REPRODUCER = "reproducer.json"


@dataclass(frozen=True, slots=True)
class Reproducer:
    """A minimal failing schedule and everything needed to run it again (``reproducer.json``).

    ``failure`` maps each failing checker of the minimal run to its counts; ``reproduced`` is
    (runs that failed the same way, confirmation runs). ``deployment`` is the import path of
    the deployment factory (``sample_system.deploy:prepare``), None when it had no importable
    name (then `replay` needs ``deployment_factory=``).

    >>> r = Reproducer(schedule=Schedule(), seed=3, variant={"idempotent_effects": False}, n_per_kind=1,
    ...                failure={"duplicates": {"duplicate_effect": 2}}, command="celery-chaos replay r.json",
    ...                target=Target("duplicates", ("duplicate_effect",)))
    >>> Reproducer.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    True
    """

    schedule: Schedule
    seed: int
    variant: Mapping[str, Any]
    n_per_kind: int
    failure: Mapping[str, Mapping[str, int]]
    command: str
    target: Target
    deployment: str | None = "sample_system.deploy:prepare"
    submit_interval_s: float = 0.1
    broker: str = "rabbitmq"
    run_id: str = ""
    evidence: str | None = None
    found_schedule: Schedule | None = None
    reproduced: tuple[int, int] = (0, 0)
    explore_command: str = ""
    space: Mapping[str, Any] = field(default_factory=dict)
    #: The claim the runs were judged under (``Claim.to_dict()``); empty: the default claim.
    claim: Mapping[str, str] = field(default_factory=dict)

    def fails_same_way(self, result: RunResult) -> bool:
        """Whether `result` (a replay) fails the way this reproducer records."""
        return self.target.matches(failing_verdicts(result))

    def describe(self) -> str:
        return self.schedule.describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "variant": dict(self.variant),
            "n_per_kind": self.n_per_kind,
            "failure": {k: dict(v) for k, v in self.failure.items()},
            "command": self.command,
            "target": self.target.to_dict(),
            "deployment": self.deployment,
            "submit_interval_s": self.submit_interval_s,
            "broker": self.broker,
            "run_id": self.run_id,
            "evidence": self.evidence,
            "found_schedule": None if self.found_schedule is None else self.found_schedule.to_dict(),
            "reproduced": {"failed_same_way": self.reproduced[0], "runs": self.reproduced[1]},
            "explore_command": self.explore_command,
            "space": dict(self.space),
            "claim": dict(self.claim),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reproducer:
        missing = [k for k in ("schedule", "seed", "variant", "n_per_kind", "failure") if k not in d]
        if missing:
            raise ConfigError(f"a reproducer needs {missing}: is this a reproducer.json written by "
                              "`celery-chaos explore`?")
        try:
            return cls._from_checked_dict(d)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"a reproducer field has the wrong type ({type(exc).__name__}: {exc}): seed and "
                              "n_per_kind are integers, variant and failure JSON objects, schedule a schedule "
                              "object; re-run `celery-chaos explore` to write a fresh one") from None

    @classmethod
    def _from_checked_dict(cls, d: Mapping[str, Any]) -> Reproducer:
        for key, kind in (("variant", dict), ("failure", dict), ("schedule", dict)):
            if not isinstance(d[key], kind):
                raise ConfigError(f"reproducer field {key!r} must be a JSON object, not {type(d[key]).__name__}: "
                                  "re-run `celery-chaos explore` to write a fresh reproducer")
        for key in ("seed", "n_per_kind"):
            if isinstance(d[key], bool) or not isinstance(d[key], int):
                raise ConfigError(f"reproducer field {key!r} must be an integer, not {d[key]!r}: "
                                  "re-run `celery-chaos explore` to write a fresh reproducer")
        failure = d["failure"]
        target = d.get("target") or {"checker": next(iter(failure), ""), "violations": []}
        rep = d.get("reproduced") or {}
        found = d.get("found_schedule")
        return cls(schedule=Schedule.from_dict(d["schedule"]), seed=int(d["seed"]), variant=dict(d["variant"]),
                   n_per_kind=int(d["n_per_kind"]), failure={k: dict(v) for k, v in failure.items()},
                   command=str(d.get("command", "")), target=Target.from_dict(target),
                   deployment=d.get("deployment"), submit_interval_s=float(d.get("submit_interval_s", 0.1)),
                   broker=str(d.get("broker", "rabbitmq")), run_id=str(d.get("run_id", "")),
                   evidence=d.get("evidence"),
                   found_schedule=None if found is None else Schedule.from_dict(found),
                   reproduced=(int(rep.get("failed_same_way", 0)), int(rep.get("runs", 0))),
                   explore_command=str(d.get("explore_command", "")), space=dict(d.get("space") or {}),
                   claim=Claim.from_any(d["claim"]).to_dict() if d.get("claim") else {})

    def write(self, path: Path | str) -> Path:
        """Write as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path | str) -> Reproducer:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no reproducer at {path}: pass the reproducer.json an exploration wrote") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON ({exc}): pass the reproducer.json an exploration wrote") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path} ({exc.strerror or exc}): pass the reproducer.json an exploration "
                              "wrote") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} holds {type(doc).__name__}, not a reproducer object")
        return cls.from_dict(doc)



# -- the deployment factory ----------------------------------------------------------------------


def factory_path(factory: DeploymentFactory | str) -> str | None:
    if isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or not name or "<" in name:
        return None
    try:
        from harness.workload import load_object

        return f"{module}:{name}" if load_object(f"{module}:{name}", "deployment") is factory else None
    except ConfigError:
        return None


def load_factory(factory: DeploymentFactory | str) -> DeploymentFactory:
    if not isinstance(factory, str):
        if not callable(factory):
            raise ConfigError(f"deployment_factory must be prepare(stack, **variant) (a context manager of "
                              f"harness.workload.Deployment) or its import path, not {factory!r}")
        return factory
    from harness.workload import load_object

    obj = load_object(factory, "deployment")
    if not callable(obj):
        raise ConfigError(f"deployment {factory!r} is not callable: name a prepare(stack, **variant) function "
                          "such as sample_system.deploy:prepare")
    return obj  # type: ignore[no-any-return]



def replay(path: Path | str, stack: Stack, *, deployment_factory: DeploymentFactory | str | None = None,
           directory: Path | str | None = None, log: Log | None = None) -> RunResult:
    """Run a reproducer's schedule again, with its variant, units and submit pace, on `stack`.

    The deployment is the reproducer's ``deployment`` import path unless `deployment_factory`
    is given. Check the outcome with ``Reproducer.read(path).fails_same_way(result)``.

    Example::

        result = replay("out/explore/reproducer.json", stack)
        print(result.summary())
    """
    repro = Reproducer.read(path)
    factory_ref = deployment_factory if deployment_factory is not None else repro.deployment
    if factory_ref is None:
        raise ConfigError(f"{path} names no deployment (the exploration used an unnamed factory): pass "
                          "replay(..., deployment_factory=prepare)")
    factory = load_factory(factory_ref)
    config = RunConfig(schedule=repro.schedule, n_per_kind=repro.n_per_kind,
                       submit_interval_s=repro.submit_interval_s, directory=directory,
                       claim=Claim.from_any(dict(repro.claim) or None))
    with factory(stack, **dict(repro.variant)) as d:
        return run_deployment(stack, d, config, log=log)

