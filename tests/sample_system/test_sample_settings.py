"""Settings: production defaults from the articles, env round trip, variants, errors that name the fix."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from sample_system.factory import celery_config, make_app
from sample_system.settings import Settings


def test_defaults_are_the_articles_production_values() -> None:
    s = Settings()
    assert (s.serializer, s.acks_late, s.reject_on_worker_lost, s.prefetch_multiplier) == ("json", True, True, 1)
    assert (s.time_limit, s.soft_time_limit, s.result_expires, s.max_tasks_per_child) == (300, 240, 86400, 100)
    assert (s.max_retries, s.retry_backoff, s.retry_backoff_max, s.retry_jitter) == (5, 1.0, 600.0, True)
    assert s.confirm_publish and s.broker_heartbeat > 0 and s.idempotent_effects and s.dlq


def test_celery_config_carries_every_reliability_setting() -> None:
    c = celery_config(Settings())
    assert c["accept_content"] == ["json"] and c["result_accept_content"] == ["json"]
    assert c["task_serializer"] == c["result_serializer"] == "json"
    assert (c["task_acks_late"], c["task_reject_on_worker_lost"], c["worker_prefetch_multiplier"]) == (True, True, 1)
    assert c["broker_transport_options"] == {"confirm_publish": True}
    assert (c["broker_heartbeat"], c["task_time_limit"], c["task_soft_time_limit"]) == (30.0, 300.0, 240.0)
    assert (c["result_expires"], c["worker_max_tasks_per_child"]) == (86400, 100)
    assert c["task_acks_on_failure"] is False, "late acks + DLQ: failures are rejected into the DLX"


@pytest.mark.parametrize(("overrides", "check"), [
    ({"acks_late": False}, lambda c, s: c["task_acks_late"] is False and s.dlq_mode == "publish"),
    ({"idempotent_effects": False}, lambda c, s: s.idempotent_effects is False),
    ({"dlq": False}, lambda c, s: c["task_acks_on_failure"] is True and s.dlq_mode == "off"),
    ({"rate_limit": None}, lambda c, s: s.rate_limit is None),
    ({"broker": "redis", "visibility_timeout": 10},
     lambda c, s: c["broker_transport_options"]["visibility_timeout"] == 10
     and c["broker_url"].startswith("redis://") and s.dlq_mode == "redis"),
])
def test_each_variant_is_one_keyword_away(overrides: dict, check) -> None:
    s = Settings(**overrides)
    assert check(celery_config(s), s)


def test_rate_limit_reaches_the_rate_limited_task() -> None:
    assert make_app(Settings(rate_limit="3/m")).tasks["notifications.deliver"].rate_limit == "3/m"
    assert make_app(Settings(rate_limit=None)).tasks["notifications.deliver"].rate_limit is None


def test_env_round_trip_keeps_every_field() -> None:
    s = Settings(acks_late=False, rate_limit=None, notification_channels=("email", "push"), max_tasks_per_child=None,
                 broker="redis", visibility_timeout=7, retry_backoff=0.25)
    assert Settings.from_env(s.to_env()) == s


def test_from_env_parses_types_and_applies_overrides_last() -> None:
    env = {"SAMPLE_ACKS_LATE": "off", "SAMPLE_MAX_RETRIES": "3", "SAMPLE_RETRY_BACKOFF": "0.5",
           "SAMPLE_NOTIFICATION_CHANNELS": "email, sms", "UNRELATED": "x"}
    s = Settings.from_env(env, max_retries=7)
    assert (s.acks_late, s.max_retries, s.retry_backoff, s.notification_channels) == (False, 7, 0.5, ("email", "sms"))


def test_unknown_env_var_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError, match="SAMPLE_ACKS_LATE"):
        Settings.from_env({"SAMPLE_ACK_LATE": "true"})


def test_bad_env_value_names_the_variable_and_the_accepted_values() -> None:
    with pytest.raises(ConfigError, match=r"SAMPLE_DLQ='maybe'.*true/false"):
        Settings.from_env({"SAMPLE_DLQ": "maybe"})
    with pytest.raises(ConfigError, match="SAMPLE_MAX_RETRIES"):
        Settings.from_env({"SAMPLE_MAX_RETRIES": "lots"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"broker": "kafka"}, "use 'rabbitmq' or 'redis'"),
    ({"broker_url": "redis://127.0.0.1:6379/0"}, "does not match broker='rabbitmq'"),
    ({"visibility_timeout": 10}, "Redis broker only"),
    ({"soft_time_limit": 300, "time_limit": 300}, "must be below time_limit"),
    ({"rate_limit": "ten per second"}, "not a Celery rate"),
    ({"serializer": "pickle"}, "never accepts pickle"),
    ({"max_retries": -1}, "max_retries=-1"),
    ({"notification_channels": ()}, "at least one channel"),
])
def test_invalid_settings_fail_when_built_with_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**kwargs)


def test_replace_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="did you mean rate_limit"):
        Settings().replace(ratelimit="1/s")


def test_app_attribute_is_built_from_the_environment_on_first_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    import sample_system

    monkeypatch.delitem(sample_system.__dict__, "app", raising=False)
    monkeypatch.setenv("SAMPLE_MAX_RETRIES", "4")
    app = sample_system.app
    assert app.sample_settings.max_retries == 4 and app.conf.task_max_retries == 4
    assert sample_system.app is app
    monkeypatch.delitem(sample_system.__dict__, "app")
