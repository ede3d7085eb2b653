"""A scenario's own RabbitMQ configuration: checked before boot, refused at boot as one line, applied."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile

import pytest

from harness.errors import ConfigError, HarnessError
from harness.stack.containers.servers import files_tar
from harness.stack.local import LocalStack, LocalStackOptions
from harness.stack.rabbitmq import LocalRabbitMQ, find_rabbitmq_server
from harness.stack.rabbitmq_cluster import LocalRabbitMQCluster
from harness.stack.rabbitmq_config import (
    CORE_APPS,
    RabbitMQPolicy,
    RabbitMQSchema,
    RabbitMQSettings,
    apply_policies,
    boot_error,
    container_files,
    merge_conf,
    needed_apps,
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


# -- rendering: one line per setting, files for a container, what a cluster keeps --------------------

def test_a_scenario_key_replaces_the_default_and_its_one_form_family():
    defaults = {"log.console.level": "warning", "disk_free_limit.absolute": "1MB",
                "vm_memory_high_watermark.relative": "0.8", "cluster_partition_handling": "pause_minority"}
    settings = RabbitMQSettings(conf={"cluster_partition_handling": "autoheal",
                                      "vm_memory_high_watermark.absolute": "1GB", "consumer_timeout": 3000})
    assert merge_conf(defaults, settings) == [
        "log.console.level = warning", "disk_free_limit.absolute = 1MB",
        "cluster_partition_handling = autoheal", "vm_memory_high_watermark.absolute = 1GB",
        "consumer_timeout = 3000"]
    assert merge_conf(defaults, RabbitMQSettings()) == [f"{k} = {v}" for k, v in defaults.items()]


def test_container_files_are_a_conf_d_file_and_advanced_config():
    settings = RabbitMQSettings(conf={"consumer_timeout": 3000, "log.console.level": "debug"},
                                app_env={"channel_tick_interval": 500})
    files = container_files(settings)
    assert files == {"etc/rabbitmq/conf.d/90-chaos-scenario.conf": "consumer_timeout = 3000\nlog.console.level = debug\n",
                     "etc/rabbitmq/advanced.config": "[{rabbit, [{channel_tick_interval, 500}]}].\n"}
    with tarfile.open(fileobj=io.BytesIO(files_tar(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == set(files)
        assert all(m.mode == 0o644 and m.uid == 0 for m in members.values())
        extracted = tar.extractfile("etc/rabbitmq/advanced.config")
        assert extracted is not None and extracted.read().decode() == files["etc/rabbitmq/advanced.config"]
    assert container_files(RabbitMQSettings(policies=(RabbitMQPolicy("p", ".*", {"message-ttl": 1}),))) == {}


def _plugins_tar(layout: str) -> io.BytesIO:
    """A plugins tree as the engine streams it: Debian's directories or the official image's .ez files."""
    apps = {
        "rabbit": ("{application, rabbit, [{applications, [kernel, rabbit_common]}, {env, [\n"
                   "     {consumer_timeout, 1800000},\n     {channel_tick_interval, 60000}\n  ]}]}.", SCHEMA),
        "rabbit_common": ("{application, rabbit_common, [{applications, [kernel]}]}.", None),
        "rabbitmq_management": ("{application, rabbitmq_management, [{applications, [rabbit]}]}.",
                                '{mapping, "management.tcp.port", "rabbitmq_management.tcp_config.port", '
                                '[{datatype, integer}]}.'),
        "rabbitmq_mqtt": ("{application, rabbitmq_mqtt, [{applications, [rabbit]}]}.",
                          '{mapping, "mqtt.listeners.tcp.$name", "rabbitmq_mqtt.tcp_listeners", []}.'),
    }
    buf = io.BytesIO()

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for app, (app_text, schema) in apps.items():
            files = {f"ebin/{app}.app": app_text, **({f"priv/schema/{app}.schema": schema} if schema else {})}
            if layout == "dirs":
                for inner, text in files.items():
                    add(tar, f"lib/rabbitmq_server-3.10.8/plugins/{app}-3.10.8/{inner}", text.encode())
            else:
                ez = io.BytesIO()
                with zipfile.ZipFile(ez, "w") as z:
                    for inner, text in files.items():
                        z.writestr(f"{app}-3.13.7/{inner}", text)
                add(tar, f"plugins/{app}-3.13.7.ez", ez.getvalue())
        add(tar, "plugins/README", b"not a plugin")
    buf.seek(0)
    return buf


@pytest.mark.parametrize("layout, version", [("dirs", "3.10.8"), ("ez", "3.13.7")])
def test_the_schema_is_read_from_an_images_plugin_tree(layout, version):
    core = RabbitMQSchema.from_tar(_plugins_tar(layout), CORE_APPS)
    assert core.version == version
    core.check(RabbitMQSettings(conf={"consumer_timeout": 3000}, app_env={"channel_tick_interval": 500}))
    with pytest.raises(ConfigError, match=f"RabbitMQ {version} has no setting 'consumer_timeot'"):
        core.check(RabbitMQSettings(conf={"consumer_timeot": 3000}))
    # Only the schemas of the applications the node runs: an mqtt key is refused, as RabbitMQ
    # refuses it when the plugin is not enabled; the management plugin's keys with management on.
    with pytest.raises(ConfigError, match="has no setting 'mqtt.listeners.tcp.default'"):
        core.check(RabbitMQSettings(conf={"mqtt.listeners.tcp.default": 1883}))
    with pytest.raises(ConfigError, match="has no setting 'management.tcp.port'"):
        core.check(RabbitMQSettings(conf={"management.tcp.port": 15673}))
    with_mgmt = RabbitMQSchema.from_tar(_plugins_tar(layout), (*CORE_APPS, "rabbitmq_management"))
    with_mgmt.check(RabbitMQSettings(conf={"management.tcp.port": 15673}))
    with pytest.raises(ConfigError, match="management.tcp.port = 'x' is not an integer"):
        with_mgmt.check(RabbitMQSettings(conf={"management.tcp.port": "x"}))
    with pytest.raises(ConfigError, match="no application setting 'channel_tick'"):
        core.check(RabbitMQSettings(app_env={"channel_tick": 1}))


def test_an_image_laid_out_otherwise_leaves_the_check_to_rabbitmq():
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    empty.seek(0)
    schema = RabbitMQSchema.from_tar(empty)
    assert schema == RabbitMQSchema()
    schema.check(RabbitMQSettings(conf={"anything_at_all": 1}, app_env={"whatever": 1}))


def test_needed_apps_follow_the_app_files_only():
    texts = {"rabbit": "{applications, [kernel, rabbit_common]}, {included_applications, [ra]}",
             "rabbit_common": "{applications, [kernel]}", "ra": "", "rabbitmq_mqtt": "{applications, [rabbit]}"}
    assert needed_apps(texts, ["rabbit"]) == {"rabbit", "rabbit_common", "ra"}
    assert needed_apps(texts, ["nothing"]) == set()


def test_policies_go_through_ctl_and_a_refusal_is_one_line():
    calls: list[tuple[str, ...]] = []
    policies = (RabbitMQPolicy("ttl", "^ttl\\.", {"message-ttl": 100}), RabbitMQPolicy("ha", "^ha\\.", {"ha-mode": "all"}))
    apply_policies(policies, lambda *args: calls.append(args) or "")
    assert [c[-3] for c in calls] == ["ttl", "ha"] and calls[0][0] == "set_policy"

    def refuse(*args: str) -> str:
        raise HarnessError("rabbitmqctl set_policy failed with code 65: Setting policy \"ha\" ...\n"
                           "Error:\nValidation failed\n\n<<\"ha-mode\">> is not a valid ha mode\n")
    with pytest.raises(ConfigError) as err:
        apply_policies(policies[1:], refuse)
    assert str(err.value) == ("RabbitMQ refused policy 'ha': Validation failed <<\"ha-mode\">> is not a valid ha mode: "
                              "fix its definition")


def test_the_cluster_takes_settings_but_not_its_own_discovery_keys():
    settings = RabbitMQSettings(conf={"consumer_timeout": 3000}, policies=(RabbitMQPolicy("p", ".*", {"x": 1}),))
    assert LocalStackOptions(topology="cluster", rabbitmq=settings).rabbitmq is settings
    assert settings.without_policies() == RabbitMQSettings(conf={"consumer_timeout": 3000})
    with pytest.raises(ConfigError, match="'cluster_formation.peer_discovery_backend' is set by the harness on a "
                                          "cluster"):
        LocalStackOptions(topology="cluster",
                          rabbitmq=RabbitMQSettings(conf={"cluster_formation.peer_discovery_backend": "dns"}))


def test_the_containers_stack_takes_settings_for_a_rabbitmq_broker_only():
    from harness.stack.containers import ContainerStackOptions

    settings = RabbitMQSettings(conf={"consumer_timeout": 3000})
    assert ContainerStackOptions(rabbitmq=settings).rabbitmq is settings
    with pytest.raises(ConfigError, match="need broker='rabbitmq'"):
        ContainerStackOptions(broker="redis", rabbitmq=settings)
    with pytest.raises(ConfigError, match="must be a RabbitMQSettings, not dict"):
        ContainerStackOptions(rabbitmq={"consumer_timeout": 3000})  # type: ignore[arg-type]


def test_every_cluster_node_writes_the_settings_and_the_cluster_keeps_the_policies():
    find_rabbitmq_server()
    settings = RabbitMQSettings(conf={"consumer_timeout": 3000, "cluster_partition_handling": "autoheal"},
                                app_env={"channel_tick_interval": 500},
                                policies=(RabbitMQPolicy("p", ".*", {"message-ttl": 1}),))
    cluster = LocalRabbitMQCluster(settings=settings)   # built, not started: files only
    try:
        for lb, node in cluster.nodes.items():
            conf = (node.config.base_dir / "rabbitmq.conf").read_text().splitlines()
            assert "consumer_timeout = 3000" in conf, lb
            assert [ln for ln in conf if ln.startswith("cluster_partition_handling")] == \
                ["cluster_partition_handling = autoheal"], lb
            assert (node.config.base_dir / "advanced.config").read_text() == \
                "[{rabbit, [{channel_tick_interval, 500}]}].\n"
            assert node.settings.policies == ()
        assert cluster.settings.policies == settings.policies
        assert any(ln.startswith("cluster_formation.peer_discovery_backend")
                   for ln in (cluster.nodes["n2"].config.base_dir / "rabbitmq.conf").read_text().splitlines())
    finally:
        cluster.close()
    with pytest.raises(ConfigError, match="has no setting 'consumer_timeot'"):
        LocalRabbitMQCluster(settings=RabbitMQSettings(conf={"consumer_timeot": 1}))


def test_boot_error_reads_a_coloured_container_log():
    red, end = "\x1b[38;5;160m", "\x1b[0m"
    log = (f"{red}2026-12-07 22:52:00.153428+00:00 [error] <0.132.0> Error preparing configuration in phase "
           f"validation:{end}\n"
           f"{red}2026-12-07 22:52:00.153449+00:00 [error] <0.132.0>   - vm_memory_high_watermark.relative invalid, "
           f"cannot be converted to a float{end}\n{red}2026-12-07 22:52:00.153449+00:00 [error] <0.132.0> {end}\n")
    assert boot_error(log) == "vm_memory_high_watermark.relative invalid, cannot be converted to a float"
