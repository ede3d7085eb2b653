"""The dead-letter queue: where permanently failed tasks land, and the tool to list and replay them.

Responsibility: `envelope` (what a dead letter says), `queues` (RabbitMQ queue or Redis hash),
``python -m sample_system.dlq list|replay|purge`` (the operator's command).

Example::

    $ python -m sample_system.dlq list
    $ python -m sample_system.dlq replay 7f0c...e1
"""

from __future__ import annotations

from sample_system.dlq.queues import DeadLetters, RabbitDeadLetters, RedisDeadLetters, dead_letters_for

__all__ = ["DeadLetters", "RabbitDeadLetters", "RedisDeadLetters", "dead_letters_for"]
