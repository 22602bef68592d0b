"""Fixtures that start real `ottla serve` processes on free ports with temp data dirs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BrokerProcess:
    """A running `ottla serve`; restartable on the same port and data dir."""

    data_dir: Path
    port: int
    overrides: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "ottla",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
        ]
        for item in self.overrides:
            command += ["--override", item]
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log_file, stderr=log_file)
        log_file.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ottla exited at startup:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)  # polling a port for readiness, not synchronising a test
        raise RuntimeError(f"ottla did not listen within {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]


def start_three_nodes(
    directory: Path, cluster_id: str, overrides: list[str]
) -> dict[int, BrokerProcess]:
    """Three `ottla serve` voters (node ids 1-3, combined roles) on loopback, each in
    `directory`/node<id>, started (each listening; the quorum forms meanwhile). If one
    fails to start, those already started are killed."""
    ports = {n: free_port() for n in (1, 2, 3)}
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in ports.items())
    nodes = {
        n: BrokerProcess(
            directory / f"node{n}",
            ports[n],
            [
                f"node.id={n}",
                f"controller.quorum.voters={voters}",
                f"cluster.id={cluster_id}",
                *overrides,
            ],
        )
        for n in (1, 2, 3)
    }
    try:
        for node in nodes.values():
            node.start()
    except BaseException:
        for node in nodes.values():
            node.stop(signal.SIGKILL)
        raise
    return nodes


@contextlib.contextmanager
def shared_broker_in(directory: Path, *overrides: str) -> Iterator[BrokerProcess]:
    """A broker in `directory` for a module-scoped fixture shared by tests.

    Torn down with SIGKILL: a clean stop fsyncs every log (about 50 ms each), which
    adds seconds per module; the restart tests cover SIGTERM.
    """
    broker = BrokerProcess(directory / "data", free_port(), list(overrides))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(signal.SIGKILL)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[type[BrokerProcess] | object]:
    started: list[BrokerProcess] = []

    def make(*overrides: str) -> BrokerProcess:
        data_dir = tmp_path / f"data-{len(started)}"
        broker = BrokerProcess(data_dir, free_port(), list(overrides))
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        try:
            broker.stop(signal.SIGKILL if os.environ.get("OTTLA_FAST_TEARDOWN") else signal.SIGTERM)
        except subprocess.TimeoutExpired:
            broker.stop(signal.SIGKILL)


@pytest.fixture
def broker(broker_factory: object) -> BrokerProcess:
    return broker_factory()  # type: ignore[operator,no-any-return]
