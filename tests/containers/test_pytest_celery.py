"""pytest-celery users add the harness's proxy and server controls to their own `celery_setup`.

pytest-celery's fixtures start the broker and backend containers (with our images when no
registry is reachable); the harness attaches a Toxiproxy container to that setup's network.
Its default worker image installs Celery from PyPI inside `docker build`, which air-gapped CI
cannot do, so this setup has no worker cluster (pytest-celery supports returning None).
"""

from __future__ import annotations

import time

import kombu
import pytest
from broker_probes import durable_queue, get_one, publish_persistent
from pytest_celery import CeleryBackendCluster, CeleryBrokerCluster

from harness.images.names import ImageMode, Service
from harness.images.resolve import resolve_images
from harness.stack.base import Role
from harness.stack.containers import attach_to_celery_setup

pytestmark = pytest.mark.containers


def _image(service: Service, mode: str) -> str:
    return resolve_images([service], mode=ImageMode.parse(mode), pull_timeout=20)[service].image


@pytest.fixture
def default_rabbitmq_broker_image(image_mode: str) -> str:
    return _image(Service.RABBITMQ, image_mode)


@pytest.fixture
def default_redis_backend_image(image_mode: str) -> str:
    return _image(Service.REDIS, image_mode)


@pytest.fixture
def celery_broker_cluster(celery_rabbitmq_broker):
    cluster = CeleryBrokerCluster(celery_rabbitmq_broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster(celery_redis_backend):
    cluster = CeleryBackendCluster(celery_redis_backend)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_worker_cluster():
    return None


def test_attach_to_celery_setup_adds_proxies_and_broker_control(celery_setup, image_mode):
    with attach_to_celery_setup(celery_setup, images=image_mode) as stack:
        urls = stack.urls
        assert urls.proxied[Role.PRODUCER_BROKER].upstream == f"{stack.broker.network_host}:5672"
        assert stack.broker.container.id.startswith(stack.broker.network_host)
        assert set(urls.proxied) == set(Role)

        # The test's own app now publishes through the producer-role proxy.
        stack.apply_to(celery_setup.app)
        assert celery_setup.app.conf.broker_url == urls.url_for(Role.PRODUCER_BROKER)

        queue = durable_queue("chaos-ptc")
        body = {"n": time.time_ns()}
        publish_persistent(urls.url_for(Role.PRODUCER_BROKER), queue, body)

        # Cut the producer role: its proxy refuses, the worker role's still reaches the broker.
        stack.toxiproxy.update_proxy(Role.PRODUCER_BROKER.proxy_name, enabled=False)
        try:
            with pytest.raises(Exception):  # noqa: B017 - kombu raises various connection errors
                with kombu.Connection(urls.url_for(Role.PRODUCER_BROKER), connect_timeout=1.5) as conn:
                    conn.ensure_connection(max_retries=0, timeout=1.5)
        finally:
            stack.toxiproxy.update_proxy(Role.PRODUCER_BROKER.proxy_name, enabled=True)

        # Broker outage through the harness's ServerControl over pytest-celery's container.
        stack.broker.kill()
        assert not stack.broker.is_running()
        stack.broker.start()
        # The published host port may change on `docker start`; the proxies reach the broker by name.
        assert get_one(urls.url_for(Role.WORKER_BROKER), queue) == body
        toxiproxy_container = f"chaos-{stack.run_id}-toxiproxy"
        assert toxiproxy_container in stack.containers()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    # pytest-celery's own containers are untouched by the harness's teardown.
    celery_setup.broker.container.reload()
    assert celery_setup.broker.container.status == "running"
