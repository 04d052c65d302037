"""Service settings from SLIPSTREAM_* variables; a bad value names the variable and the value."""

from __future__ import annotations

import msgspec
import pytest
from slipstream_platform.errors import SettingsError
from slipstream_platform.settings import (
    CommonSettings,
    QueueManagerSettings,
    RealtimeSettings,
    SchedulerSettings,
    SupervisorSettings,
    TriggerApiSettings,
    load_settings,
)

ALL_SETTINGS = [
    CommonSettings,
    TriggerApiSettings,
    QueueManagerSettings,
    SchedulerSettings,
    SupervisorSettings,
    RealtimeSettings,
]


@pytest.mark.parametrize("cls", ALL_SETTINGS, ids=lambda c: c.__name__)
def test_an_empty_environment_gives_the_defaults(cls: type[CommonSettings]) -> None:
    assert load_settings(cls, {}) == cls()


@pytest.mark.parametrize("cls", ALL_SETTINGS, ids=lambda c: c.__name__)
def test_common_variables_are_read_and_converted(cls: type[CommonSettings]) -> None:
    settings = load_settings(
        cls,
        {
            "SLIPSTREAM_HTTP_PORT": "5",
            "SLIPSTREAM_NATS_URL": "nats://nats:4222",
            "SLIPSTREAM_LOG_LEVEL": "DEBUG",
            "SLIPSTREAM_OTEL_EXPORTER": "console",
        },
    )
    assert type(settings) is cls
    assert settings.http_port == 5
    assert settings.nats_url == "nats://nats:4222"
    assert settings.log_level == "DEBUG"
    assert settings.otel_exporter == "console"
    assert settings.database_url == cls().database_url


def test_service_variables_are_converted_to_their_field_types() -> None:
    settings = load_settings(
        SupervisorSettings,
        {"SLIPSTREAM_CONCURRENCY": "8", "SLIPSTREAM_HEARTBEAT_INTERVAL": "0.5", "SLIPSTREAM_TASKS": "examples"},
    )
    assert settings.concurrency == 8
    assert settings.heartbeat_interval == 0.5
    assert settings.tasks == "examples"


def test_an_integer_string_is_accepted_for_a_float_field() -> None:
    assert load_settings(SchedulerSettings, {"SLIPSTREAM_TICK_INTERVAL": "1"}).tick_interval == 1.0


def test_unrelated_variables_are_ignored() -> None:
    settings = load_settings(
        QueueManagerSettings,
        {
            "PATH": "/usr/bin",
            "HTTP_PORT": "not-a-port",
            "SLIPSTREAM_UNKNOWN": "x",
            "SLIPSTREAM_CONCURRENCY": "not-a-number",  # a supervisor setting, not queue-manager's
            "slipstream_http_port": "also-not-a-port",
            "SLIPSTREAM_SWEEP_INTERVAL": "0.5",
        },
    )
    assert settings == QueueManagerSettings(sweep_interval=0.5)


def test_each_service_has_its_own_default_port() -> None:
    ports = [load_settings(cls, {}).http_port for cls in ALL_SETTINGS[1:]]
    assert ports == [3030, 3032, 3033, 3034, 3031]


def test_settings_are_frozen() -> None:
    settings = load_settings(TriggerApiSettings, {})
    with pytest.raises(AttributeError):
        settings.http_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "var", "value"),
    [
        (TriggerApiSettings, "SLIPSTREAM_HTTP_PORT", "abc"),
        (TriggerApiSettings, "SLIPSTREAM_MAX_BODY_BYTES", "3MB"),
        (QueueManagerSettings, "SLIPSTREAM_SWEEP_INTERVAL", "fast"),
        (SupervisorSettings, "SLIPSTREAM_CONCURRENCY", "1.5"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(cls: type[CommonSettings], var: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(cls, {var: value})
    message = str(caught.value)
    assert f"{var}={value!r}" in message
    assert "$." not in message


def test_a_bad_value_is_not_reported_as_a_msgspec_error() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(CommonSettings, {"SLIPSTREAM_HTTP_PORT": "abc"})
    assert not isinstance(caught.value, msgspec.ValidationError)
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("value", ["jaeger", "", "OTLP", "none,console", "console,,otlp"])
def test_an_unknown_otel_exporter_is_rejected_with_the_choices(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(RealtimeSettings, {"SLIPSTREAM_OTEL_EXPORTER": value})
    message = str(caught.value)
    assert f"SLIPSTREAM_OTEL_EXPORTER={value!r}" in message
    assert "console, otlp and postgres" in message


@pytest.mark.parametrize("value", ["console", "postgres", "otlp,postgres", "console, postgres"])
def test_exporters_can_be_combined(value: str) -> None:
    assert load_settings(RealtimeSettings, {"SLIPSTREAM_OTEL_EXPORTER": value}).otel_exporter == value


@pytest.mark.parametrize(("variable", "value"), [("SLIPSTREAM_HTTP_BODY_TIMEOUT", "0"),
                                                 ("SLIPSTREAM_HTTP_MAX_HEADER_BYTES", "100"),
                                                 ("SLIPSTREAM_WS_SEND_TIMEOUT", "-1")])
def test_limits_below_their_floor_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable}=.*at least"):
        load_settings(RealtimeSettings, {variable: value})


@pytest.mark.parametrize("value", ["100", "0/1m", "5/xyz", "5/0s", "-1/1m"])
def test_a_bad_rate_limit_is_refused_with_the_form_to_use(value: str) -> None:
    with pytest.raises(SettingsError, match="SLIPSTREAM_RATE_LIMIT="):
        load_settings(TriggerApiSettings, {"SLIPSTREAM_RATE_LIMIT": value})


def test_a_token_bucket_spends_then_refills_evenly() -> None:
    from slipstream_platform.ratelimit import Buckets, parse

    rate = parse("4/2s")
    assert rate is not None and (rate.limit, rate.window_seconds) == (4, 2.0)
    buckets = Buckets(rate, max_keys=2)
    answers = [buckets.take(b"k", 100.0) for _ in range(5)]
    assert [allowed for allowed, *_ in answers] == [True, True, True, True, False]
    allowed, tokens, until_full, until_next = answers[-1]
    assert tokens == 0 and until_full == 2.0 and until_next == 0.5
    assert buckets.take(b"k", 100.5)[0] and not buckets.take(b"k", 100.6)[0]  # one token per 0.5 s
    assert buckets.take(b"other", 100.6)[0]  # its own bucket
    buckets.take(b"third", 100.6)
    assert list(buckets.buckets) == [b"other", b"third"]  # at most max_keys, least recent out
