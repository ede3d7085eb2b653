"""Broker probes the stack tests share (local and containers): a confirmed persistent publish, one get,
an AMQP handshake.

Importable as ``broker_probes`` from any test package under ``tests/`` (pytest puts ``tests/``
on ``sys.path`` for packages with an ``__init__.py``).
"""

from __future__ import annotations

from typing import Any

import amqp
import kombu


def durable_queue(name: str) -> kombu.Queue:
    """A durable queue bound to a durable direct exchange of the same name, routing key ``k``."""
    return kombu.Queue(name, kombu.Exchange(name, type="direct", durable=True), routing_key="k", durable=True)


def publish_persistent(url: str, queue: kombu.Queue, body: Any) -> None:
    """Publish `body` persistently with publisher confirms: RabbitMQ confirms only once it is on disk.

    Without confirms a SIGKILL right after the publish can lose the message (failure mode 11).
    """
    with kombu.Connection(url, connect_timeout=5, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue],
                                delivery_mode=2, serializer="json", retry=False)


def get_one(url: str, queue: kombu.Queue, timeout: float = 10.0) -> Any:
    """Consume and ack one message of `queue` (waiting up to `timeout`); return its payload."""
    with kombu.Connection(url, connect_timeout=5) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            msg = simple.get(block=True, timeout=timeout)
            msg.ack()
        finally:
            simple.close()
    return msg.payload


def amqp_ok(url: str, timeout: float = 1.5) -> bool:
    """Whether an AMQP handshake through `url` completes within `timeout`."""
    creds, hostport = url.split("://", 1)[1].split("@", 1)
    user, password = creds.split(":", 1)
    conn = amqp.Connection(host=hostport.split("/", 1)[0], userid=user, password=password, virtual_host="/",
                           connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    try:
        conn.connect()
        return True
    except Exception:  # noqa: BLE001 - any failure means "the broker is not reachable this way"
        return False
    finally:
        try:
            conn.collect()
        except Exception:  # noqa: BLE001
            pass
