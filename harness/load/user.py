"""A Locust user that publishes Celery work: the reusable base class for your own locustfiles.

Responsibility: `CeleryUser` builds one producer app per Locust process (from `LoadTarget`, read
from the environment when the first user starts), records its publishes into the run's history
when ``CHAOS_HISTORY_DIR`` is set, submits workload units at a paced per-user rate, and reports
each submit's *publish* latency through Locust's request events (request type ``publish``, name =
the unit's kind). It never waits for task results: completion latency is measured from the
history, and the offered load does not depend on how fast workers drain it.

Importing this module imports Locust, which monkey-patches the standard library for gevent:
import it only from a locustfile (Locust's CLI or `harness.load.runner` run it in a subprocess),
never from pytest or harness code.

A subclass says how to build the app and (optionally) the workload::

    from harness.load.user import CeleryUser

    class InvoiceUser(CeleryUser):
        def create_app(self, target):
            return make_billing_app(broker_url=target.broker_url, backend_url=target.backend_url)

        def create_workload(self, app, target):
            return InvoiceWorkload()            # a harness.workload.Workload

Without a workload, write your own tasks and time them with `timed`::

        @task
        def send_invoice(self):
            self.timed("send_invoice", lambda: self.app.send_task("billing.send_invoice", kwargs={...}))

Each submit is bounded by ``CHAOS_LOAD_PUBLISH_TIMEOUT`` seconds; a submit that overruns it
counts as a failed request and closes this process's producer connections, because a late
publisher confirm would otherwise be taken for the confirm of the next message on that channel.

Each user's submits run in a long-lived publisher greenlet of its own that the user waits
for: Locust may kill a user greenlet mid-task when the run stops (its graceful stop races with
a user waking from its wait), and a publish cut in the middle is neither counted nor known. A
killed user's submit finishes on its own; the process waits for every such submit when the test
stops, before the final statistics are reported. (One greenlet per user, not one per submit:
Celery keeps the result backend's client per thread, which under gevent means per greenlet,
so a fresh greenlet per submit would open a fresh Redis connection each time.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.pool
import gevent.queue
from locust import User, events, task

from harness.errors import ConfigError
from harness.load._backend import publish_only_results
from harness.load.target import LoadTarget
from harness.load.units import UnitLedger, UnitSource
from harness.workload import Unit, Workload

__all__ = ["CeleryUser", "LoadContext", "PublishTimeout"]

log = logging.getLogger("harness.load")
T = TypeVar("T")
_REGISTRY_ATTR = "_celery_chaos_load_contexts"


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    # gevent's loop caches "now"; a locustfile whose imports (Celery, the app) take seconds leaves it
    # stale, and Locust's --run-time timer, scheduled right after this event, would fire that much early.
    gevent.get_hub().loop.update_now()


class PublishTimeout(Exception):
    """A submit took longer than the target's publish timeout (its outcome is unknown)."""


class Publisher:
    """One user's publisher greenlet: runs the user's submits one at a time, survives the user's death.

    ``run(fn)`` hands `fn` over and waits for its result; ``close()`` lets the greenlet finish
    the submit it is running, then end.
    """

    def __init__(self, group: gevent.pool.Group) -> None:
        self._jobs: gevent.queue.Queue = gevent.queue.Queue()
        self.closed = False
        self._greenlet = group.spawn(self._loop)

    def run(self, fn: Callable[[], T]) -> T:
        if self.closed or self._greenlet.dead:
            raise RuntimeError("this user's publisher has stopped (the test is stopping)")
        done: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._jobs.put((fn, done))
        return done.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                done.set(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the waiting user
                done.set_exception(exc)


class LoadContext:
    """What the users of one class share in one Locust process: the app, workload, unit source, ledger.

    Created by the first user that starts; closed when Locust quits (after every user stopped).
    """

    def __init__(self, target: LoadTarget, app: Any, workload: Workload | None) -> None:
        self.target = target
        self.app = app
        self.workload = workload
        self.units: UnitSource | None = (
            UnitSource(workload, target.run_id, kinds=target.kinds) if workload is not None else None)
        units_path = target.units_path
        self.ledger: UnitLedger | None = UnitLedger(units_path) if (units_path and workload is not None) else None
        self.installation: Any = None
        if target.history_dir:
            from harness.history import install

            self.installation = install(app, target.history_dir, target.run_id, process_name="load")
        self.publishers = gevent.pool.Group()
        self._open: list[Publisher] = []
        self._closed = False

    def new_publisher(self) -> Publisher:
        """A publisher greenlet for one user (ended by `drain`)."""
        pub = Publisher(self.publishers)
        self._open = [p for p in self._open if not p.closed]  # users that stopped closed theirs
        self._open.append(pub)
        return pub

    def drain(self, timeout_s: float | None = None) -> int:
        """Let every publisher finish its submit (at most `timeout_s`, default the publish timeout); kill the rest.

        Returns how many had to be killed (their outcome is unknown; with a history they are
        publish info or invoke-only ops there).
        """
        for pub in self._open:
            pub.close()
        self._open.clear()
        self.publishers.join(timeout=self.target.publish_timeout_s if timeout_s is None else timeout_s)
        left = len(self.publishers)
        if left:
            log.warning("%d submit(s) still in flight after the publish timeout: killing them", left)
            self.publishers.kill(block=True, timeout=5)
        return left

    def reset_connections(self) -> None:
        """Drop every broker connection of this process (in use or idle); the next publish opens a new one.

        kombu's ``pools.reset`` closes each pooled connection without the AMQP close handshake
        (which would hang on a blackholed socket) and forgets the pools; Celery's own after-fork
        reset then makes the app build fresh ones. Publishes still using an old connection fail
        (they are failed requests, and publish info in the history).
        """
        from kombu import pools

        try:
            pools.reset()
            self.app._after_fork()
        except Exception as exc:  # noqa: BLE001 - best effort: log it, the next timeout tries again
            log.warning("could not reset the producer connections: %r", exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.drain(timeout_s=min(5.0, self.target.publish_timeout_s))
        if self.ledger is not None:
            self.ledger.close()
        if self.installation is not None:
            with contextlib.suppress(Exception):
                self.installation.uninstall()
        with contextlib.suppress(Exception):
            self.app.close()


class CeleryUser(User):
    """Publishes Celery work through a producer app; subclass it (see the module docstring).

    Pacing: ``CHAOS_LOAD_USER_RATE`` submits per second per user (0: back to back). A submit
    slower than the period starts the next one at once, without catching up on missed ones.

    Example (a locustfile)::

        class SampleUser(CeleryUser):
            def create_app(self, target):
                return make_app(Settings.from_env(broker_url=target.broker_url))
            def create_workload(self, app, target):
                return SampleWorkload(app.sample_settings, kinds=target.kinds or KINDS)
    """

    abstract = True

    #: Subscribe to each task's result channel on publish, as Celery's Redis backend does for
    #: ``.get()``. Off by default: this user never waits for results, and the subscription costs
    #: two round trips per message and makes publishing depend on the result backend.
    subscribe_to_results: bool = False

    # ------------------------------------------------------------------ hooks for subclasses
    def create_app(self, target: LoadTarget) -> Any:
        """Return the producer's Celery app, configured with ``target.broker_url`` (and backend)."""
        raise ConfigError(
            f"{type(self).__name__} must override create_app(self, target) and return a Celery app that "
            "publishes to target.broker_url, e.g. `return make_app(Settings(broker_url=target.broker_url))`"
        )

    def create_workload(self, app: Any, target: LoadTarget) -> Workload | None:
        """Return the `harness.workload.Workload` to submit units of (None: only your own tasks publish)."""
        return None

    def prepare(self, app: Any) -> None:
        """Once per process before the first publish: declare the app's queues (never purge them).

        A message published to a direct exchange with no bound queue is dropped by the broker
        *and confirmed*, so an undeclared queue would lose the load silently.
        """
        queues = list(app.conf.task_queues or ())
        if not queues:
            return
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3, timeout=10)
            with conn.channel() as channel:
                for queue in queues:
                    queue(channel).declare()

    # ------------------------------------------------------------------ Locust lifecycle
    def on_start(self) -> None:
        self.load_context = self._shared_context()
        self._publisher = self.load_context.new_publisher()
        rate = self.load_context.target.user_rate
        self._period = 1.0 / rate if rate > 0 else 0.0
        self._task_started = time.monotonic()

    def on_stop(self) -> None:
        # Subclasses overriding on_stop must call super().on_stop(): it ends this user's publisher.
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.close()

    def wait_time(self) -> float:
        if not self._period:
            return 0.0
        return max(0.0, self._period - (time.monotonic() - self._task_started))

    @property
    def app(self) -> Any:
        """This process's producer app (shared by the users of this class)."""
        return self.load_context.app

    @task
    def submit_next_unit(self) -> None:
        """Submit the next workload unit (the default task; override or add tasks for your own publishes)."""
        self._task_started = time.monotonic()
        if self.load_context.units is None:
            raise ConfigError(
                f"{type(self).__name__} has no workload: override create_workload(self, app, target), or "
                "replace this task with your own @task methods that publish through self.timed(...)"
            )
        self.submit_unit(self.load_context.units.next())

    # ------------------------------------------------------------------ publishing
    def submit_unit(self, unit: Unit) -> str | None:
        """Write `unit` to the ledger, submit it through the workload, report the publish latency."""
        ctx = self.load_context
        workload = ctx.workload
        assert workload is not None

        def submit() -> str:
            if ctx.ledger is not None:
                ctx.ledger.write(unit)
            return workload.submit(ctx.app, unit)

        return self.timed(unit.kind, submit, context={"key": unit.key})

    def timed(self, name: str, publish: Callable[[], T], *, context: dict[str, Any] | None = None,
              request_type: str = "publish") -> T | None:
        """Run `publish` in this user's publisher greenlet, bounded by the publish timeout; fire one request event.

        Returns what `publish` returned, or None when it raised or timed out (the failure is in
        Locust's statistics and, with a history, in the history as publish fail/info). The
        user waits for it; if the user is killed meanwhile, the publish still completes and is
        counted (see the module docstring).
        """
        ctx = self.load_context
        events = self.environment.events
        timeout_s = ctx.target.publish_timeout_s

        def run() -> T | None:
            exc: BaseException | None = None
            result: T | None = None
            started = time.perf_counter()
            timer = gevent.Timeout(timeout_s)
            timer.start()
            try:
                result = publish()
            except gevent.Timeout as t:
                if t is not timer:
                    raise
                exc = PublishTimeout(f"{name}: no publisher confirm within {timeout_s:g} s "
                                     f"(CHAOS_LOAD_PUBLISH_TIMEOUT); the outcome is unknown")
                ctx.reset_connections()
            except Exception as e:  # noqa: BLE001 - every failed publish is a failed request, not a crash
                exc = e
            finally:
                timer.close()
            events.request.fire(request_type=request_type, name=name,
                                response_time=(time.perf_counter() - started) * 1000.0,
                                response_length=0, exception=exc, context=context or {})
            return result

        return self._publisher.run(run)

    # ------------------------------------------------------------------ per-process sharing
    def _shared_context(self) -> LoadContext:
        env = self.environment
        registry = env.__dict__.get(_REGISTRY_ATTR)
        if registry is None:
            registry = {"lock": threading.Lock(), "contexts": {}}
            env.__dict__[_REGISTRY_ATTR] = registry
        with registry["lock"]:  # a gevent lock: Locust patched threading before this module ran
            ctx = registry["contexts"].get(type(self))
            if ctx is None:
                target = LoadTarget.from_env()
                app = self.create_app(target)
                if not self.subscribe_to_results:
                    publish_only_results(app)
                self.prepare(app)
                ctx = LoadContext(target, app, self.create_workload(app, target))
                registry["contexts"][type(self)] = ctx
                # test_stop comes after the users stopped and before the final statistics are reported.
                env.events.test_stop.add_listener(lambda **_: ctx.drain())
                env.events.quit.add_listener(lambda **_: ctx.close())
            return ctx
