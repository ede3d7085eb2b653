"""Real `celery worker` processes: start, ping-ready, kill, shutdown, restart."""

from harness.workers.process import WorkerProcess, WorkerSpec

__all__ = ["WorkerProcess", "WorkerSpec"]
