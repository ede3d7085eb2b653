"""A real `celery worker` in a container on a containers stack (`ContainerWorker`).

Responsibility: run a `WorkerSpec` in a container on the stack's network (the host's in host
mode), through the worker-role proxies as the container sees them (`ContainerStack.worker_urls`),
with the host's venv and project mounted read-only. Here, not in the stack: workers depend on
the stack, never the other way round (`harness.workers.worker_for` picks host or container).

Example:
    >>> with ContainerWorker(stack, WorkerSpec(app="harness.smoke:app")) as w:   # doctest: +SKIP
    ...     w.kill(); w.start()
"""

from __future__ import annotations

import os
import secrets
import sys
import sysconfig
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.images.names import Service
from harness.images.resolve import resolve_images
from harness.stack.base import Role
from harness.stack.containers.servers import logs_tail, wait_ready
from harness.stack.containers.stack import ContainerStack
from harness.workers.process import WorkerSpec

__all__ = ["ContainerWorker"]


class ContainerWorker:
    """A real `celery worker` in a container: the host's venv and project mounted read-only.

    The image is Debian's python3 (chaos/python:local) or the official python:3.11-slim; both
    are Python 3.11 like the harness's venv, so its packages (Celery included) run unchanged,
    without installing anything inside the container (air-gapped CI cannot).

    Example:
        >>> with ContainerWorker(stack, WorkerSpec(app="harness.smoke:app")) as w:       # doctest: +SKIP
        ...     w.is_running()
        True
    """

    def __init__(self, stack: ContainerStack, spec: WorkerSpec, *, project_dir: str | Path | None = None) -> None:
        if sys.version_info[:2] != (3, 11):
            raise ConfigError(f"workers in containers mount this venv, built for Python "
                              f"{sys.version_info[0]}.{sys.version_info[1]}; the worker images run Python 3.11. "
                              "Run the harness on Python 3.11, or run workers on the host (workers='host')")
        self.stack = stack
        self.spec = spec
        self.project_dir = Path(project_dir or os.getcwd()).resolve()
        self.site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
        self.hostname = spec.hostname or f"chaos-{secrets.token_hex(3)}@container"
        self._tc: Any = None

    def _argv(self) -> list[str]:
        s = self.spec
        argv = ["python3", "-m", "harness.workers.launch", "-A", s.app, "worker", "-P", s.pool,
                "-c", str(s.concurrency), "-n", self.hostname, "--loglevel", s.loglevel,
                "--without-gossip", "--without-mingle"]
        if s.queues:
            argv += ["-Q", ",".join(s.queues)]
        return argv + list(s.extra_args)

    def start(self) -> ContainerWorker:
        """Start the container and wait until the worker answers a ping through the proxies."""
        import json

        from testcontainers.core.container import DockerContainer

        st = self.stack
        if self._tc is None:
            resolved = resolve_images([Service.PYTHON], mode=st.options.image_mode, overrides=st.options.overrides,
                                      pull_timeout=st.options.pull_timeout)[Service.PYTHON]
            broker, backend = st.worker_urls()
            paths = [*self.spec.pythonpath, "/app", "/venv-site"]
            env = {"CHAOS_BROKER_URL": broker, "CHAOS_BACKEND_URL": backend, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1", **self.spec.env}
            if self.spec.settings:
                env["CHAOS_WORKER_SETTINGS"] = json.dumps(self.spec.settings)
            name = f"chaos-{st.run_id}-worker-{secrets.token_hex(3)}"
            tc = DockerContainer(resolved.image, env=env, name=name).with_command(self._argv())
            tc.with_volume_mapping(str(self.project_dir), "/app", "ro")
            tc.with_volume_mapping(str(self.site_packages), "/venv-site", "ro")
            kwargs: dict[str, Any] = {"labels": st.labels("worker"), "init": True, "working_dir": "/app"}
            if st.options.proxy_network == "host":
                kwargs["network_mode"] = "host"
            else:
                tc.with_network(st.network)
            tc.with_kwargs(**kwargs)
            self._tc = tc.start()
        else:
            self.container.start()
        self.wait_ready()
        return self

    @property
    def container(self) -> Any:
        if self._tc is None:
            raise HarnessError("the worker container is not started")
        return self._tc.get_wrapped_container()

    def wait_ready(self, timeout: float | None = None) -> None:
        from celery import Celery

        urls = self.stack.urls
        app = Celery("chaos-ping", broker=urls.url_for(Role.PRODUCER_BROKER))
        app.conf.broker_connection_retry_on_startup = True

        def probe() -> None:
            replies = app.control.ping(destination=[self.hostname], timeout=1.0)
            if not replies:
                raise HarnessError(f"no ping reply from {self.hostname}")

        try:
            wait_ready(f"worker {self.hostname}", self.container, probe,
                        timeout=timeout or self.stack.options.startup_timeout,
                        what=f"a ping reply from {self.hostname}",
                        hint=("Check the app imports inside the container: the project is mounted at /app and "
                              f"the venv's site-packages ({self.site_packages}) at /venv-site."))
        finally:
            app.close()

    def is_running(self) -> bool:
        c = self.container
        c.reload()
        return c.status == "running"

    def kill(self) -> None:
        """SIGKILL the whole worker (every process in the container)."""
        c = self.container
        c.reload()
        if c.status == "running":
            c.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM), then remove the container."""
        if self._tc is None:
            return
        try:
            self.container.stop(timeout=int(timeout))
        except Exception:  # noqa: BLE001 - removal below forces it
            pass
        try:
            self._tc.stop()
        finally:
            self._tc = None

    def restart(self) -> ContainerWorker:
        self.container.restart(timeout=10)
        self.wait_ready()
        return self

    def logs(self, lines: int = 50) -> str:
        return logs_tail(self.container, lines)

    def __enter__(self) -> ContainerWorker:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

