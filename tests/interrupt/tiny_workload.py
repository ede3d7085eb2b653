"""A short sample-system workload for the interrupt tests: only notifications and orders.

Used as ``--workload tests.interrupt.tiny_workload:TinyWorkload`` so a certification of two
scenarios takes seconds, not half a minute.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from sample_system.workload import SampleWorkload

KINDS = ("notification", "order")


class TinyWorkload(SampleWorkload):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kinds", KINDS)
        super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def prepare(self, stack: Any, **variant: Any) -> Iterator[Any]:  # type: ignore[override]
        from sample_system.deploy import prepare

        with prepare(stack, **variant) as d:
            yield dataclasses.replace(d, workload=SampleWorkload(d.workload.settings, kinds=KINDS))
