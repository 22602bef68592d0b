"""Broker configuration: sources, precedence, typed values and clear errors.

Proves: defaults serve a laptop; a properties file, OTTLA_* environment variables,
the --data-dir/--listen shortcuts and --override layer in that order; retention
resolves ms > minutes > hours as Kafka does; every bad value raises ConfigError
whose message names the property.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ottla.config import ConfigError, Listener, load_config, parse_properties, render_markdown


def test_defaults_serve_a_laptop() -> None:
    config = load_config(environ={})
    assert [(lst.host, lst.port) for lst in config.listeners] == [("127.0.0.1", 9092)]
    assert config.data_dir == Path("./ottla-data")
    assert config.get("num.partitions") == 1
    assert config.get("auto.create.topics.enable") is True
    assert config.retention_ms == 168 * 3_600_000
    assert config.advertised_listeners == config.listeners


def test_precedence_file_env_shortcuts_overrides(tmp_path: Path) -> None:
    properties = tmp_path / "server.properties"
    properties.write_text(
        "# comment\nnum.partitions=3\nlog.dirs=/from/file\nmessage.max.bytes : 2000\n"
    )
    config = load_config(
        str(properties),
        overrides=["num.partitions=7"],
        data_dir="/from/flag",
        environ={"OTTLA_NUM_PARTITIONS": "5", "OTTLA_LOG_RETENTION_MS": "1000"},
    )
    assert config.get("num.partitions") == 7
    assert config.data_dir == Path("/from/flag")
    assert config.get("message.max.bytes") == 2000
    assert config.retention_ms == 1000


def test_listen_shortcut_resets_advertised_unless_overridden() -> None:
    config = load_config(
        listen="127.0.0.1:1234",
        environ={"OTTLA_ADVERTISED_LISTENERS": "PLAINTEXT://elsewhere:1"},
    )
    assert config.advertised_listeners == [Listener("PLAINTEXT", "127.0.0.1", 1234)]
    config = load_config(
        listen="127.0.0.1:1234",
        overrides=["advertised.listeners=PLAINTEXT://proxy:99"],
        environ={},
    )
    assert config.advertised_listeners == [Listener("PLAINTEXT", "proxy", 99)]


def test_retention_minutes_over_hours() -> None:
    config = load_config(overrides=["log.retention.minutes=2"], environ={})
    assert config.retention_ms == 120_000


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("num.partitions=0", "num.partitions"),
        ("num.partitions=many", "num.partitions"),
        ("auto.create.topics.enable=maybe", "auto.create.topics.enable"),
        ("listeners=localhost:9092", "listeners"),
        ("listeners=PLAINTEXT://a:1,PLAINTEXT://b:2", "listeners"),
        ("log.dirs=/a,/b", "log.dirs"),
        ("log.cleanup.policy=shred", "log.cleanup.policy"),
        ("log.level=loud", "log.level"),
        ("listeners=PLAINTEXT://h:70000", "listeners"),
    ],
)
def test_bad_values_name_the_property(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(overrides=[override], environ={})


def test_bad_override_and_listen_syntax() -> None:
    with pytest.raises(ConfigError, match="--override"):
        load_config(overrides=["no-equals-sign"], environ={})
    with pytest.raises(ConfigError, match="--listen"):
        load_config(listen="9092", environ={})
    with pytest.raises(ConfigError, match="--config"):
        load_config("/nonexistent/server.properties", environ={})


def test_parse_properties_forms() -> None:
    assert parse_properties("a=1\nb: 2\nc 3\n! bang comment\n\n") == {
        "a": "1",
        "b": "2",
        "c": "3",
    }


def test_topic_defaults_follow_broker_properties() -> None:
    config = load_config(
        overrides=["log.segment.bytes=1048576", "log.retention.hours=1"], environ={}
    )
    assert config.topic_default("segment.bytes") == "1048576"
    assert config.topic_default("retention.ms") == "3600000"
    assert config.topic_default("cleanup.policy") == "delete"
    assert config.topic_default("max.message.bytes") == "1048588"
    assert config.topic_default("message.timestamp.before.max.ms") == str(2**63 - 1)


def test_timestamp_bounds_default_from_the_broker() -> None:
    config = load_config(overrides=["log.message.timestamp.before.max.ms=3600000"], environ={})
    assert config.topic_default("message.timestamp.before.max.ms") == "3600000"
    assert config.topic_default("message.timestamp.after.max.ms") == str(2**63 - 1)


def test_docs_configuration_md_is_generated_from_the_definitions() -> None:
    # docs/configuration.md is `ottla config`'s output; regenerate it when this fails:
    # python -m ottla config > docs/configuration.md
    path = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert path.read_text() == render_markdown()
    assert "`log.dirs`" in path.read_text()
