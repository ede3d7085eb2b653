"""The containers stack: RabbitMQ, Redis and Toxiproxy as Docker containers (testcontainers).

Responsibility: start a broker, a result backend and a fault proxy as containers on a
private Docker network of their own, one proxy per client role published on 127.0.0.1,
hand out direct and per-role URLs exactly like the local stack, offer the container-only
faults (pause/unpause, docker kill + start keeping data), and remove every container, network
and volume it made (found by its run label) on exit, failure or interrupt. Workers in
containers on this stack are `harness.workers.container.ContainerWorker` (the stack never
imports the workers).

Modules: `options` (ContainerStackOptions), `servers` (one broker or backend container as a
ServerControl, readiness probes), `stack` (ContainerStack), `celery_setup` (the bridge to a
pytest-celery `celery_setup`: `attach_to_celery_setup`).

Options (ContainerStackOptions; each also read from the environment when the stack is built):
    images            auto | official | local (CHAOS_IMAGES); auto = official image when present
                      or pullable, else the one `celery-chaos images build` made
    rabbitmq_image, redis_image, toxiproxy_image, python_image
                      explicit images (CHAOS_RABBITMQ_IMAGE, CHAOS_REDIS_IMAGE, CHAOS_TOXIPROXY_IMAGE,
                      CHAOS_PYTHON_IMAGE)
    broker            rabbitmq (default) or redis
    redis_aof         AOF with fsync always on Redis, so a killed backend keeps its results
    rabbitmq_management  enable the management plugin (the official image always has it)
    proxy_network     host (default; CHAOS_PROXY_NETWORK) or bridge. host: the Toxiproxy container
                      shares the host's network and listens on 127.0.0.1 itself, upstreams are the
                      servers' published ports, so proxies behave exactly as on the local stack (a
                      disabled proxy refuses connections, its ports are real sockets). bridge:
                      Toxiproxy on the stack's network, upstreams by container name, proxy ports
                      published on 127.0.0.1; Docker's userland proxy then accepts connections to
                      a disabled proxy and closes them (a reset, not a refusal)
    workers           host (default) or containers (CHAOS_WORKERS): where `harness.workers.worker_for(stack, spec)` runs workers
    rabbitmq          the scenario's own RabbitMQ configuration (`RabbitMQSettings`: rabbitmq.conf settings,
                      application environment, policies), as on the local stack: checked against the
                      schemas inside the broker's image before it starts, copied into the container
                      before it starts (``/etc/rabbitmq/conf.d/90-chaos-scenario.conf`` and
                      ``advanced.config``), policies set with rabbitmqctl once it answers; a refusal at
                      boot is one ConfigError line (docs/containers.md)
    startup_timeout, pull_timeout, spare_proxies

Why not pytest-celery's containers for the stack itself: its nodes are pytest fixtures built on
pytest_docker_tools (function scope, created by fixture resolution), publish ports on every
interface, and its worker image installs Celery from PyPI inside `docker build`, which an
air-gapped CI cannot do. The CLI (`celery-chaos stack up --provider containers`) needs a plain
object. `attach_to_celery_setup` goes the other way: it adds the harness's proxy and server
controls to an existing pytest-celery `celery_setup`.

Example:
    >>> with ContainerStack(images="local") as stack:                  # doctest: +SKIP
    ...     app = Celery(broker=stack.urls.url_for(Role.PRODUCER_BROKER))
    ...     stack.broker.pause(); stack.broker.unpause()
"""

from __future__ import annotations

from harness.images.engine import DockerUnavailable
from harness.stack.containers.celery_setup import CelerySetupStack, attach_to_celery_setup
from harness.stack.containers.options import ContainerStackOptions
from harness.stack.containers.servers import ContainerRabbitMQ, ContainerServer
from harness.stack.containers.stack import ContainerStack

__all__ = ["CelerySetupStack", "ContainerRabbitMQ", "ContainerServer", "ContainerStack", "ContainerStackOptions",
           "DockerUnavailable", "attach_to_celery_setup"]
