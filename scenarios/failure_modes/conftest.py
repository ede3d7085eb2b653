"""Fixtures of the failure-mode scenarios.

Both stacks come from outside this folder and are started once per session: ``chaos_stack``
(RabbitMQ broker, the harness's pytest plugin) and ``redis_broker_stack`` (Redis as broker,
``scenarios/conftest.py``), for the modes only a Redis broker shows. The probe workload and
the one-call runner live in ``fm_kit.py`` next to the tests.
"""
