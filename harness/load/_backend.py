"""A Redis result backend for producers that never wait for results.

Responsibility: `PublishOnlyRedisBackend`, Celery's Redis result backend minus the
subscription to each published task's result channel. Celery's Redis backend subscribes on
every publish (and unsubscribes when the AsyncResult is dropped) so that ``.get()`` can be
woken by pub/sub: two extra round trips per message, and a publish that fails when the result
backend is unreachable. A load generator never calls ``.get()``; everything else (storing and
reading results, chords) is unchanged, and the messages are the same.

Selected through Celery's ``<backend class>+<url>`` form of ``result_backend``
(`publish_only_results`); nothing of Locust is imported here.

Example:
    >>> from celery import Celery
    >>> app = Celery("demo", backend="redis://127.0.0.1:6379/0", set_as_current=False)
    >>> publish_only_results(app)
    True
    >>> app.conf.result_backend
    'harness.load._backend:PublishOnlyRedisBackend+redis://127.0.0.1:6379/0'
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend

_SCHEMES = ("redis", "rediss")


class PublishOnlyRedisBackend(RedisBackend):
    """Celery's RedisBackend that does not subscribe to result channels on publish."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


def publish_only_results(app: Any) -> bool:
    """Switch `app` (before its backend is first used) to `PublishOnlyRedisBackend`; False when it has no Redis backend."""
    url = app.conf.result_backend
    if not isinstance(url, str) or url.split("://", 1)[0] not in _SCHEMES:
        return False
    app.conf.result_backend = f"{__name__}:{PublishOnlyRedisBackend.__name__}+{url}"
    return True
