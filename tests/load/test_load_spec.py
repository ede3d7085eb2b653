"""harness.load.target and harness.load.runner (pure parts): the env contract, spec validation, command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.load.runner import LoadSpec, locust_commands, locust_env
from harness.load.target import LoadTarget
from harness.stack.base import ProxiedEndpoint, Role, StackURLs

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = str(REPO / "loadtests" / "locustfile.py")


def test_target_round_trips_through_the_environment() -> None:
    t = LoadTarget(broker_url="amqp://u:p@127.0.0.1:1//", backend_url="redis://127.0.0.1:2/0", run_id="r1",
                   history_dir="/tmp/h", units_dir="/tmp/u", user_rate=2.5, kinds=("order", "scan"),
                   publish_timeout_s=3.0)
    assert LoadTarget.from_env(t.to_env()) == t


def test_target_from_env_falls_back_and_explains_what_is_missing() -> None:
    t = LoadTarget.from_env({"CHAOS_BROKER_URL": "amqp://127.0.0.1//", "CHAOS_BACKEND_URL": "redis://x/0"})
    assert (t.broker_url, t.backend_url, t.user_rate, t.kinds) == ("amqp://127.0.0.1//", "redis://x/0", 0.0, ())
    assert t.run_id.startswith("load-") and t.units_path is None
    with pytest.raises(ConfigError, match="CHAOS_PRODUCER_BROKER_URL"):
        LoadTarget.from_env({})
    with pytest.raises(ConfigError, match="CHAOS_LOAD_USER_RATE='fast' is not a number"):
        LoadTarget.from_env({"CHAOS_BROKER_URL": "amqp://127.0.0.1//", "CHAOS_LOAD_USER_RATE": "fast"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"broker_url": "localhost"}, "not a broker URL"),
    ({"run_id": "a:b"}, "no ':'"),
    ({"user_rate": -1.0}, "user_rate"),
    ({"publish_timeout_s": 0.0}, "publish_timeout_s"),
    ({"kinds": ("a,b",)}, "without commas"),
])
def test_target_rejects_bad_values(kwargs, message) -> None:
    base = {"broker_url": "amqp://127.0.0.1//", "run_id": "r1"}
    with pytest.raises(ConfigError, match=message):
        LoadTarget(**{**base, **kwargs})


def test_target_from_urls_uses_the_producer_proxies() -> None:
    def ep(role: Role, port: int, scheme: str) -> ProxiedEndpoint:
        return ProxiedEndpoint(role, role.value, "127.0.0.1", port, "127.0.0.1:1", f"{scheme}://127.0.0.1:{port}/")

    urls = StackURLs("amqp://127.0.0.1:5672//", "redis://127.0.0.1:6379/0", "http://127.0.0.1:8474", proxied={
        Role.PRODUCER_BROKER: ep(Role.PRODUCER_BROKER, 1001, "amqp"),
        Role.WORKER_BROKER: ep(Role.WORKER_BROKER, 1002, "amqp"),
        Role.PRODUCER_BACKEND: ep(Role.PRODUCER_BACKEND, 1003, "redis"),
    })
    t = LoadTarget.from_urls(urls, run_id="r9", history_dir=Path("/tmp/h"))
    assert (t.broker_url, t.backend_url, t.history_dir) == ("amqp://127.0.0.1:1001/", "redis://127.0.0.1:1003/",
                                                            "/tmp/h")
    assert t.units_path == Path("/tmp/h/units")


def test_spec_paces_the_total_rate_per_user_and_resolves_the_locustfile(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    spec = LoadSpec("loadtests/locustfile.py", users=4, rate_per_s=20)
    assert spec.user_rate == 5.0 and spec.locustfile == LOCUSTFILE
    assert LoadSpec(LOCUSTFILE).user_rate is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"locustfile": "nope/locustfile.py"}, "does not exist"),
    ({"users": 0}, "users=0"),
    ({"run_time_s": 0.5}, "run_time_s"),
    ({"rate_per_s": 0}, "rate_per_s"),
    ({"workers": 3, "users": 2}, "some workers would run no user"),
    ({"workers": 1, "distribution": "k8s"}, "distribution='k8s'"),
    ({"extra_args": ("--users=3",)}, "set options the spec owns"),
    ({"user_classes": ("not a class",)}, "not class names"),
])
def test_spec_rejects_bad_values_with_the_fix(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        LoadSpec(**{"locustfile": LOCUSTFILE, **kwargs})


def test_commands_for_each_distribution() -> None:
    single = locust_commands(LoadSpec(LOCUSTFILE, users=3, run_time_s=4.2, stop_timeout_s=2), python="py")
    assert len(single) == 1
    name, argv = single[0]
    assert argv[:3] == ["py", "-m", "harness.load._locust_main"]
    joined = " ".join(argv)
    assert "--headless -u 3 -r 3 -t 5s -s 2" in joined and "--processes" not in joined

    forked = locust_commands(LoadSpec(LOCUSTFILE, users=4, workers=2), python="py")
    assert len(forked) == 1 and "--processes 2" in " ".join(forked[0][1])

    spec = LoadSpec(LOCUSTFILE, users=2, workers=2, distribution="master", user_classes=("SampleSystemUser",))
    cmds = dict(locust_commands(spec, master_port=5600, python="py"))
    master = " ".join(cmds["locust-master"])
    assert "--master --master-bind-host 127.0.0.1 --master-bind-port 5600 --expect-workers 2" in master
    for worker in ("locust-worker-1", "locust-worker-2"):
        argv = cmds[worker]
        assert "--worker" in argv and "--headless" not in argv and argv[-1] == "SampleSystemUser"
        assert " ".join(argv).count("--master-port 5600") == 1
    with pytest.raises(ConfigError, match="master_port"):
        locust_commands(spec)


def test_env_carries_the_target_and_drops_stray_locust_and_chaos_variables(tmp_path) -> None:
    spec = LoadSpec(LOCUSTFILE, users=2, rate_per_s=10, env={"SAMPLE_SCAN_ASSETS": "2"})
    target = LoadTarget(broker_url="amqp://127.0.0.1//", run_id="r1", user_rate=99.0)
    env = locust_env(spec, target, tmp_path, base={"PATH": "/bin", "LOCUST_USERS": "100",
                                                   "CHAOS_UNITS_DIR": "/stale", "CHAOS_KEEP": "x"})
    assert env["PATH"] == "/bin" and "LOCUST_USERS" not in env and "CHAOS_UNITS_DIR" not in env
    assert env["CHAOS_LOAD_USER_RATE"] == "5.0"     # the spec's total rate wins over the target's pacing
    assert env["CHAOS_PRODUCER_BROKER_URL"] == "amqp://127.0.0.1//" and env["CHAOS_RUN_ID"] == "r1"
    assert env["SAMPLE_SCAN_ASSETS"] == "2" and env["CHAOS_LOAD_SUMMARY_DIR"] == str(tmp_path)


def test_a_run_that_cannot_start_leaves_nothing_behind() -> None:
    from harness.load.runner import LoadRun

    run = LoadRun(LoadSpec(LOCUSTFILE, users=2, workers=2, distribution="master"),
                  LoadTarget(broker_url="amqp://127.0.0.1:1//", run_id="r1"), python="/nonexistent/python3")
    with pytest.raises(FileNotFoundError, match="cannot run"):
        with run:
            pass
    assert run.work_dir is not None and not run.work_dir.exists()
    assert not run.is_running() and run.pids() == []
    with pytest.raises(RuntimeError, match="not started"):
        run.wait()
