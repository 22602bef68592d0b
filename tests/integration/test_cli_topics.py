"""`ottla topics` administers topics of a real broker from the shell.

Proves create (with partitions and a config), list, describe (human and --json:
leader, replicas, ISR, the topic's own configs), delete, and clear failures: an
existing topic, an invalid name and an unreachable broker give Kafka's error name
and a non-zero exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.conftest import BrokerProcess


def _ottla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ottla", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_topics_commands(broker: BrokerProcess) -> None:
    server = ("--bootstrap-server", broker.bootstrap)
    created = _ottla(
        "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=1000", *server
    )
    assert created.returncode == 0, created.stderr
    assert "created topic orders" in created.stdout

    again = _ottla("topics", "create", "orders", *server)
    assert again.returncode == 1
    assert "TOPIC_ALREADY_EXISTS" in again.stderr

    invalid = _ottla("topics", "create", "bad name", *server)
    assert invalid.returncode == 1
    assert "INVALID_TOPIC_EXCEPTION" in invalid.stderr

    assert _ottla("topics", "list", *server).stdout.split() == ["orders"]

    described = json.loads(_ottla("topics", "describe", "orders", "--json", *server).stdout)
    assert described[0]["configs"] == {"retention.ms": "1000"}
    assert [p["partition"] for p in described[0]["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 1 and p["isr"] == [1] for p in described[0]["partitions"])
    human = _ottla("topics", "describe", *server).stdout
    assert "Topic: orders" in human and "PARTITION" in human

    deleted = _ottla("topics", "delete", "orders", *server)
    assert deleted.returncode == 0, deleted.stderr
    assert _ottla("topics", "list", *server).stdout.split() == []


def test_unreachable_broker_is_one_clear_line() -> None:
    result = _ottla("topics", "list", "--bootstrap-server", "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("ottla: cannot connect to 127.0.0.1:1")
    assert "Traceback" not in result.stderr
