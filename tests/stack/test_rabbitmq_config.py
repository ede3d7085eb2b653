"""A scenario's own RabbitMQ configuration: checked before boot, refused at boot as one line, applied."""

from __future__ import annotations

import json
import time

import pytest

from harness.errors import ConfigError
from harness.stack.local import LocalStack, LocalStackOptions
from harness.stack.rabbitmq import LocalRabbitMQ, find_rabbitmq_server
from harness.stack.rabbitmq_config import (
    RabbitMQPolicy,
    RabbitMQSettings,
    boot_error,
    schema_mappings,
    validate,
)

SCHEMA = """
{mapping, "consumer_timeout", "rabbit.consumer_timeout", [
    {datatype, integer},
    {validators, ["non_zero_positive_integer"]}
]}.
{mapping, "queue_master_locator", "rabbit.queue_master_locator", [{datatype, string}]}.
{mapping, "cluster_partition_handling", "rabbit.cluster_partition_handling",
    [{datatype, {enum, [ignore, pause_minority, autoheal]}}]}.
{mapping, "listeners.tcp.$name", "rabbit.tcp_listeners", [{datatype, [integer, ip]}]}.
{translation, "rabbit.tcp_listeners", fun(Conf) -> ok end}.
"""

APP = """{application, rabbit, [
  {env, [
     {consumer_timeout, 1800000},
     {channel_tick_interval, 60000}
  ]}
]}.
"""


@pytest.fixture
def schema(tmp_path):
    (tmp_path / "rabbit.schema").write_text(SCHEMA)
    (tmp_path / "rabbit.app").write_text(APP)
    return [tmp_path / "rabbit.schema"], tmp_path / "rabbit.app"


@pytest.mark.parametrize("settings, message", [
    (RabbitMQSettings(conf={"consumer_timeot": 3000}),
     "rabbitmq conf: RabbitMQ 3.10.8 has no setting 'consumer_timeot' (did you mean 'consumer_timeout'?): fix or "
     "remove it"),
    (RabbitMQSettings(conf={"consumer_timeout": "3s"}),
     "rabbitmq conf: consumer_timeout = '3s' is not an integer: give one, e.g. consumer_timeout = 30000"),
    (RabbitMQSettings(conf={"consumer_timeout": 0}), "rabbitmq conf: consumer_timeout = 0 is below 1: give at least 1"),
    (RabbitMQSettings(conf={"cluster_partition_handling": "pause_all"}),
     "rabbitmq conf: cluster_partition_handling = 'pause_all' is not one of ignore, pause_minority, autoheal: pick one"),
    (RabbitMQSettings(app_env={"channel_tick": 500}),
     "rabbitmq app_env: RabbitMQ 3.10.8 has no application setting 'channel_tick' (did you mean "
     "'channel_tick_interval'?): fix or remove it"),
])
def test_what_this_rabbitmq_does_not_know_is_one_line_before_boot(schema, settings, message):
    schemas, app = schema
    with pytest.raises(ConfigError) as err:
        validate(settings, schemas, app, "3.10.8")
    assert str(err.value) == message


def test_known_settings_pass_and_wildcard_keys_match(schema):
    schemas, app = schema
    validate(RabbitMQSettings(conf={"consumer_timeout": 3000, "queue_master_locator": "anything"},
                              app_env={"channel_tick_interval": 500}), schemas, app, "3.10.8")
    names = {m.name for m in schema_mappings(schemas)}
    assert names == {"consumer_timeout", "queue_master_locator", "cluster_partition_handling", "listeners.tcp.$name"}


@pytest.mark.parametrize("build, fragment", [
    (lambda: RabbitMQSettings(conf={"listeners.tcp.1": "0.0.0.0:5672"}), "is set by the harness"),
    (lambda: RabbitMQSettings(conf={"default_pass": "x"}), "is set by the harness"),
    (lambda: RabbitMQSettings(conf={"consumer_timeout": "1\nlisteners.tcp.2 = 0.0.0.0:1"}), "not a one-line value"),
    (lambda: RabbitMQSettings(app_env={"channel_tick_interval": "1 s"}), "give an integer, a boolean or an atom"),
    (lambda: RabbitMQPolicy("ttl", "(", {"message-ttl": 1}), "is not a regular expression"),
    (lambda: RabbitMQPolicy("ttl", ".*", {}), "the definition is empty"),
    (lambda: RabbitMQPolicy("ttl", ".*", {"x": 1}, apply_to="streams"), "is not one of queues, exchanges, all"),
    (lambda: RabbitMQSettings(policies=(RabbitMQPolicy("a", ".*", {"x": 1}), RabbitMQPolicy("a", ".*", {"y": 1}))),
     "a name is used twice"),
    (lambda: LocalStackOptions(broker="redis", rabbitmq=RabbitMQSettings(conf={"consumer_timeout": 1})),
     "need broker='rabbitmq'"),
])
def test_settings_that_cannot_work_are_refused_when_built(build, fragment):
    with pytest.raises(ConfigError) as err:
        build()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_boot_error_reads_the_reason_from_the_node_log():
    log = ("2026-12-07 19:18:27.125311+00:00 [error] <0.132.0> You've tried to set consumer_timeot, but there is "
           "no setting with that name.\n"
           "2026-12-07 19:18:27.153428+00:00 [error] <0.132.0> Error preparing configuration in phase "
           "transform_datatypes:\n"
           "2026-12-07 19:18:27.153449+00:00 [error] <0.132.0>   - Conf file attempted to set unknown variable: "
           "consumer_timeot\n\nBOOT FAILED\n")
    assert boot_error(log) == "Conf file attempted to set unknown variable: consumer_timeot"
    assert boot_error("started\n") is None


def test_a_scenario_setting_replaces_the_harness_default_line():
    find_rabbitmq_server()
    rabbit = LocalRabbitMQ(settings=RabbitMQSettings(conf={"log.console.level": "info", "consumer_timeout": 3000},
                                                     app_env={"channel_tick_interval": 500}))
    try:
        conf = (rabbit.config.base_dir / "rabbitmq.conf").read_text().splitlines()
        assert [ln for ln in conf if ln.startswith("log.console.level")] == ["log.console.level = info"]
        assert "consumer_timeout = 3000" in conf
        advanced = (rabbit.config.base_dir / "advanced.config").read_text()
        assert advanced == "[{rabbit, [{channel_tick_interval, 500}]}].\n"
    finally:
        rabbit.close()


def test_a_value_rabbitmq_refuses_at_boot_is_one_config_line_not_a_timeout():
    # A float setting is not checked before boot: RabbitMQ's own validation refuses it.
    t0 = time.monotonic()
    stack = LocalStack(LocalStackOptions(rabbitmq=RabbitMQSettings(conf={"vm_memory_high_watermark.relative": "lots"})))
    with pytest.raises(ConfigError) as err:
        stack.start()
    message = str(err.value)
    assert "\n" not in message and "vm_memory_high_watermark.relative" in message, message
    assert message.startswith("RabbitMQ refused its configuration: ") and "fix or remove" in message
    assert time.monotonic() - t0 < 20  # it failed at once, not after the start-up timeout
    assert stack.pids() == []


@pytest.mark.full
def test_settings_and_policies_reach_the_node():
    policy = RabbitMQPolicy("chaos-ttl", "^ttl\\.", {"message-ttl": 60000}, priority=3)
    options = LocalStackOptions(rabbitmq=RabbitMQSettings(conf={"consumer_timeout": 3000},
                                                          app_env={"channel_tick_interval": 500},
                                                          policies=(policy,)))
    with LocalStack(options) as stack:
        rabbit = stack.broker
        assert isinstance(rabbit, LocalRabbitMQ)
        env = rabbit.ctl("eval", "{application:get_env(rabbit, consumer_timeout), "
                                 "application:get_env(rabbit, channel_tick_interval)}.")
        assert "{{ok,3000},{ok,500}}" in env.replace(" ", "")
        (listed,) = json.loads(rabbit.ctl("list_policies", "--formatter", "json"))
        assert (listed["name"], listed["pattern"], listed["priority"]) == ("chaos-ttl", "^ttl\\.", 3)
        assert json.loads(listed["definition"]) == {"message-ttl": 60000}


@pytest.mark.full
def test_a_policy_rabbitmq_refuses_is_one_config_line():
    bad = RabbitMQPolicy("chaos-bad", ".*", {"no-such-key": 1})
    stack = LocalStack(LocalStackOptions(rabbitmq=RabbitMQSettings(policies=(bad,))))
    with pytest.raises(ConfigError) as err:
        stack.start()
    message = str(err.value)
    assert message.startswith("RabbitMQ refused policy 'chaos-bad': ") and "no-such-key" in message, message
    assert "\n" not in message
    assert stack.pids() == []
