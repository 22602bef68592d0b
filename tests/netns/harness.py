"""Three `ottla serve` processes on three "hosts": network namespaces on one bridge.

Topology (one cluster; names carry the slot, the test process's pid and a counter, so
parallel runs and several clusters in one run never collide):

    <p>br    a namespace holding only the bridge br0 (no uplink: nothing leaves it)
    <p>n1..3 node namespaces; eth0 = <net>.1..3, veth peer `p1..p3` on br0
    root     the test process's namespace: veth `<p>h` = <net>.14, peer `ph` on br0

so clients running in the test process (confluent-kafka, aiokafka, kafka-python,
`ottla.client.Client`) connect to every node's own address, exactly as they would to
three hosts. Addresses stay inside 10.77.0.0/24: the /24 is cut into sixteen /28 slots
and a run holds one slot by an flock on a file in the temp dir (`_Slot`), so two runs
at once use disjoint addresses and the root namespace only gets a connected route to
its own /28. The root namespace gains one veth and nothing else (no forwarding, no
NAT); every node process is started with `ip netns exec`, which execs, so the Popen
pid is ottla's own.

Faults: `kill` (any signal; SIGKILL by default) and `start` again on the same data
dir, `pause`/`resume` (SIGSTOP/SIGCONT), `isolate` (nft DROP of every packet between
the node and the other nodes, in the node's namespace; the test client keeps reaching
it unless `from_client=True`, so a test can still ask the cut-off node what it
believes), `partition(a, b)` (between two nodes only) and `heal`.

Teardown (`close`, also on `__exit__` and at interpreter exit) always runs every step
even when one fails: SIGCONT+SIGKILL of the node processes this harness started,
deletion of its namespaces (which destroys their veths) and of the root veth, and
release of the slot. Namespaces left by a run that died without teardown (SIGKILL of
pytest) are swept by the next cluster that takes the same slot.

`unavailable()` names why network namespaces cannot be used here (no `ip`, or `ip netns
add` refused, e.g. not root); the pytest fixture skips with that reason and only then.
A missing `nft` is not a reason to skip: `isolate`/`partition` fail saying so.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, TypeVar

from ottla.client import Client, ClientError
from ottla.protocol import ErrorCode, make

__all__ = [
    "CLUSTER_ID",
    "PORT",
    "NetnsCluster",
    "Node",
    "unavailable",
    "until",
]

CLUSTER_ID = "q1cTp2LqQ0aKz6u9ZBvYpA"
PORT = 9092
NETWORK = "10.77.0"  # the /24 this harness may use (see the module docstring)
SLOT_SIZE = 16
CLIENT_HOST = 14  # the root namespace's address inside a slot: <base> + 14
STARTUP_TIMEOUT_S = 30.0
_PREFIX = "ottla"
_GUARD_METRIC = 4277
_LOG_NOISE = ('"connection_opened"', '"connection_closed"', '"storage.log.opened"')
_counter = itertools.count()

T = TypeVar("T")


def _run(*command: str, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "`ip` is not installed (apt-get install iproute2)"
    probe = f"{_PREFIX}probe{os.getpid()}"
    result = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return f"`ip netns add` is not permitted: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def until(condition: Callable[[], T], timeout_s: float = 15.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy (returned) or the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except (ClientError, OSError) as error:
            last_error = error
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"{what}: not met within {timeout_s} s{detail}")
        time.sleep(0.05)  # polling interval, not synchronisation


def sweep_stale(slot: int) -> list[str]:
    """Delete namespaces and root veths left in `slot` by a run that died without its
    teardown. Only the holder of the slot's lock calls this, so whatever carries the
    slot's name is stale (a pid check would misjudge runs in other pid namespaces)."""
    removed = []
    names = re.compile(rf"^{_PREFIX}{slot}s\d+x\d+(br|n\d+)$")
    for line in _run("ip", "netns", "list", check=False).splitlines():
        name = line.split(" ", 1)[0]
        if names.match(name):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    links = re.compile(rf"^{_PREFIX}{slot}h\d+$")
    for line in _run("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(": ")
        if len(parts) >= 2 and links.match(parts[1].split("@", 1)[0]):
            link = parts[1].split("@", 1)[0]
            _run("ip", "link", "del", link, check=False)
            removed.append(link)
    return removed


class _Slot:
    """One /28 of 10.77.0.0/24, held by an exclusive flock for the life of a cluster."""

    def __init__(self) -> None:
        self.index = -1
        self._file: IO[bytes] | None = None

    def acquire(self) -> int:
        directory = Path(tempfile.gettempdir())
        for index in range(256 // SLOT_SIZE):
            handle = (directory / f"ottla-netns-slot-{index}.lock").open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            base = f"{NETWORK}.{index * SLOT_SIZE + CLIENT_HOST}"
            if f"{base}/" in _run("ip", "-br", "addr", "show", check=False):
                handle.close()  # taken by something that does not use our locks
                continue
            self.index, self._file = index, handle
            return index
        raise RuntimeError("no free /28 slot in 10.77.0.0/24 for a netns cluster")

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def host(self, offset: int) -> str:
        return f"{NETWORK}.{self.index * SLOT_SIZE + offset}"


@dataclass
class Node:
    """One ottla process in its own namespace, restartable on the same data dir."""

    node_id: int
    namespace: str
    host: str
    data_dir: Path
    log_path: Path
    overrides: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        command = [
            "ip",
            "netns",
            "exec",
            self.namespace,
            sys.executable,
            "-m",
            "ottla",
            "serve",
            "--data-dir",
            str(self.data_dir),
        ]
        for item in self.overrides:
            command += ["--override", item]
        return command

    def log(self, tail: int = 60) -> str:
        """The last `tail` lines of the node's log, without per-connection and
        per-partition-open chatter."""
        if not self.log_path.exists():
            return ""
        lines = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if not any(noise in line for noise in _LOG_NOISE)
        ]
        return "\n".join(lines[-tail:])


class NetnsCluster:
    """Namespaces, bridge, root veth and three ottla voters; see the module docstring.

    `overrides` are added to every node's configuration (after the ones the harness
    sets: node.id, listeners, controller.quorum.voters, cluster.id).
    """

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        overrides: Sequence[str] = (),
        cluster_id: str = CLUSTER_ID,
    ) -> None:
        self.workdir = workdir
        self.size = size
        self.extra = list(overrides)
        self.cluster_id = cluster_id
        # Named once the slot is held (setup): ottla<slot>s<pid>x<n>{br,n1..}, ottla<slot>h<pid>.
        self.prefix = ""
        self.bridge_ns = ""
        self.root_link = ""
        self._slot = _Slot()
        self.nodes: dict[int, Node] = {}
        self._namespaces: list[str] = []
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> NetnsCluster:
        try:
            self.setup()
            self.start_all()
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def client_host(self) -> str:
        """The test process's own address on the bridge."""
        return self._slot.host(CLIENT_HOST)

    def setup(self) -> None:
        """Create the namespaces, the bridge, the veths and the node descriptions."""
        slot = self._slot.acquire()
        sweep_stale(slot)
        self.prefix = f"{_PREFIX}{slot}s{os.getpid()}x{next(_counter)}"
        self.bridge_ns = f"{self.prefix}br"
        self.root_link = f"{_PREFIX}{slot}h{os.getpid()}"[:15]  # IFNAMSIZ - 1
        atexit.register(self.close)
        mask = 32 - (SLOT_SIZE - 1).bit_length()
        self._add_namespace(self.bridge_ns)
        ip_br = ("ip", "-n", self.bridge_ns)
        _run(*ip_br, "link", "set", "lo", "up")
        _run(*ip_br, "link", "add", "br0", "type", "bridge")
        _run(*ip_br, "link", "set", "br0", "up")
        voters = ",".join(f"{n}@{self._slot.host(n)}:{PORT}" for n in range(1, self.size + 1))
        for n in range(1, self.size + 1):
            namespace = f"{self.prefix}n{n}"
            host = self._slot.host(n)
            self._add_namespace(namespace)
            _run(*ip_br, "link", "add", f"p{n}", "type", "veth", "peer", "eth0", "netns", namespace)
            _run(*ip_br, "link", "set", f"p{n}", "master", "br0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            # A fixed MAC per address: a restarted node is never hidden by a stale ARP entry.
            mac = f"02:77:00:{self._slot.index:02x}:00:{n:02x}"
            _run("ip", "-n", namespace, "link", "set", "eth0", "address", mac)
            _run("ip", "-n", namespace, "addr", "add", f"{host}/{mask}", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            node_dir = self.workdir / f"node{n}"
            node_dir.mkdir(parents=True, exist_ok=True)
            self.nodes[n] = Node(
                node_id=n,
                namespace=namespace,
                host=host,
                data_dir=node_dir / "data",
                log_path=node_dir / "ottla.log",
                overrides=[
                    f"node.id={n}",
                    f"listeners=PLAINTEXT://{host}:{PORT}",
                    f"controller.quorum.voters={voters}",
                    f"cluster.id={self.cluster_id}",
                    "log.format=json",
                    *self.extra,
                ],
            )
        # The root namespace's way in: one veth, its peer on the bridge.
        peer = ("peer", "ph", "netns", self.bridge_ns)
        _run("ip", "link", "add", self.root_link, "type", "veth", *peer)
        _run(*ip_br, "link", "set", "ph", "master", "br0", "up")
        _run("ip", "addr", "add", f"{self.client_host}/{mask}", "dev", self.root_link)
        _run("ip", "link", "set", self.root_link, "up")
        # Once the veth is gone, the slot's addresses must not follow the default route
        # (a client left open by a test would reconnect outside): a fail-fast route
        # below the connected one, left in place until this process exits.
        self._guard_route()

    def _guard_route(self) -> None:
        prefix = f"{self._slot.host(0)}/{32 - (SLOT_SIZE - 1).bit_length()}"
        route = ("route", "unreachable", prefix, "metric", str(_GUARD_METRIC))
        _run("ip", *route[:1], "del", *route[1:], check=False)  # a dead run's, same slot
        _run("ip", *route[:1], "add", *route[1:])
        atexit.register(_run, "ip", *route[:1], "del", *route[1:], check=False)

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)

    def close(self) -> None:
        """Kill the processes, delete namespaces and veth, free the slot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGCONT)
                    node.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(10)
            node.process = None
        for name in reversed(self._namespaces):
            _run("ip", "netns", "del", name, check=False)
        if self.root_link:
            _run("ip", "link", "del", self.root_link, check=False)
        self._slot.release()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this cluster still present (empty after close)."""
        if not self.prefix:
            return []
        found = [
            line.split(" ", 1)[0]
            for line in _run("ip", "netns", "list", check=False).splitlines()
            if line.startswith(self.prefix)
        ]
        if f" {self.root_link}@" in _run("ip", "-o", "link", "show", check=False):
            found.append(self.root_link)
        return found

    # ------------------------------------------------------------------ processes

    def start_all(self) -> None:
        """Start every stopped node, then wait until each listens."""
        for node in self.nodes.values():
            if not node.running:
                self._spawn(node)
        for node in self.nodes.values():
            self._wait_listening(node)

    def wait_ready(self, timeout_s: float = 20.0) -> int:
        """Wait for a quorum leader and every running node listing every node as a broker;
        the leader's id."""
        leader = self.leader(timeout_s=timeout_s)
        wanted = sorted(self.nodes)
        for node_id, node in self.nodes.items():
            if node.running:

                def listed(node_id: int = node_id) -> bool:
                    return self.broker_ids(node_id) == wanted

                until(listed, timeout_s, f"node {node_id} lists brokers {wanted}")
        return leader

    def start(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.running:
            raise RuntimeError(f"node {node_id} is already running")
        self._spawn(node)
        self._wait_listening(node)

    def _spawn(self, node: Node) -> None:
        with node.log_path.open("ab") as log_file:
            node.process = subprocess.Popen(
                node.command(), stdout=log_file, stderr=log_file, start_new_session=True
            )

    def _wait_listening(self, node: Node) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        assert node.process is not None
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"node {node.node_id} exited at startup:\n{node.log()}")
            try:
                with socket.create_connection((node.host, PORT), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)  # polling a port for readiness
        raise RuntimeError(f"node {node.node_id} did not listen in time:\n{node.log()}")

    def kill(self, node_id: int, sig: int = signal.SIGKILL, timeout_s: float = 20.0) -> int:
        """Send `sig` (SIGKILL by default, SIGTERM for a clean stop) and wait for the exit."""
        node = self.nodes[node_id]
        if node.process is None:
            return 0
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGCONT)
            node.process.send_signal(sig)
        code = node.process.wait(timeout_s)
        node.process = None
        return code

    def restart(self, node_id: int, sig: int = signal.SIGTERM) -> None:
        self.kill(node_id, sig)
        self.start(node_id)

    def pause(self, node_id: int) -> None:
        process = self.nodes[node_id].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        process = self.nodes[node_id].process
        assert process is not None
        process.send_signal(signal.SIGCONT)

    # ------------------------------------------------------------------ network faults

    def _drop(self, node_id: int, table: str, peers: Sequence[str], percent: int = 100) -> None:
        if shutil.which("nft") is None:
            raise RuntimeError("`nft` is not installed (apt-get install nftables)")
        namespace = self.nodes[node_id].namespace
        addresses = ", ".join(peers)
        hook = "type filter hook {} priority 0;"
        # Each packet independently, with probability percent/100.
        chance = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
        rules = (
            f"table inet {table} {{\n"
            f"  chain in {{ {hook.format('input')} ip saddr {{ {addresses} }} {chance}drop; }}\n"
            f"  chain out {{ {hook.format('output')} ip daddr {{ {addresses} }} {chance}drop; }}\n"
            "}\n"
        )
        _run("ip", "netns", "exec", namespace, "nft", "-f", "-", stdin=rules)

    def isolate(self, node_id: int, from_client: bool = False) -> None:
        """Drop every packet between `node_id` and the other nodes (and the test process
        too when `from_client`). Established connections hang rather than reset."""
        peers = [n.host for n in self.nodes.values() if n.node_id != node_id]
        if from_client:
            peers.append(self.client_host)
        self._drop(node_id, "ottla_isolate", peers)

    def partition(self, a: int, b: int) -> None:
        """Drop every packet between nodes `a` and `b` (rules on both ends)."""
        self._drop(a, f"ottla_cut{b}", [self.nodes[b].host])
        self._drop(b, f"ottla_cut{a}", [self.nodes[a].host])

    def lossy(self, a: int, b: int, percent: int) -> None:
        """Drop `percent`% of the packets between nodes `a` and `b`, each at random, in
        both directions (rules on `a`'s end): TCP retransmits, the link crawls."""
        self._drop(a, f"ottla_loss{b}", [self.nodes[b].host], percent)

    def reset_connections(self, node_id: int, peer_id: int) -> None:
        """Abort, on `node_id`'s side, every connection `peer_id` opened to its listener
        (`ss -K`: the socket is destroyed and the peer gets a reset), with both
        processes alive."""
        node, peer = self.nodes[node_id], self.nodes[peer_id]
        _run(
            "ip", "netns", "exec", node.namespace, "ss", "-K",
            "src", node.host, "sport", "=", str(PORT), "dst", peer.host,
        )  # fmt: skip

    def heal(self, *node_ids: int) -> None:
        """Remove every drop rule of these nodes (all nodes when none is named)."""
        for node_id in node_ids or tuple(self.nodes):
            namespace = self.nodes[node_id].namespace
            tables = _run("ip", "netns", "exec", namespace, "nft", "list", "tables", check=False)
            for line in tables.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[2].startswith("ottla_"):
                    _run("ip", "netns", "exec", namespace, "nft", "delete", "table", *parts[1:])

    # ------------------------------------------------------------------ protocol helpers

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def client(self, node_id: int, timeout_s: float = 5.0) -> Client:
        return Client(self.nodes[node_id].bootstrap, timeout_s=timeout_s, client_id="netns-test")

    def call(self, node_id: int, api: str, build: Callable[[ModuleType, int], Any]) -> Any:
        with self.client(node_id) as client:
            return client.call(api, build)

    def metadata(self, node_id: int) -> Any:
        def build(module: ModuleType, version: int) -> Any:
            return make(
                module.MetadataRequest,
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
                include_cluster_authorized_operations=False,
            )

        return self.call(node_id, "metadata", build)

    def broker_ids(self, node_id: int) -> list[int]:
        return sorted(int(b.node_id) for b in self.metadata(node_id).brokers)

    def topic_names(self, node_id: int) -> set[str]:
        return {t.name for t in self.metadata(node_id).topics if t.error_code is ErrorCode.none}

    def quorum_leader(self, node_id: int) -> int | None:
        """The leader this node's DescribeQuorum names (answered by the leader itself)."""

        def build(module: ModuleType, version: int) -> Any:
            return make(
                module.DescribeQuorumRequest,
                topics=(
                    make(
                        module.TopicData,
                        topic_name="__cluster_metadata",
                        partitions=(make(module.PartitionData, partition_index=0),),
                    ),
                ),
            )

        partition = self.call(node_id, "describe_quorum", build).topics[0].partitions[0]
        if partition.error_code is ErrorCode.none:
            return int(partition.leader_id)
        return None

    def leader(self, among: Sequence[int] | None = None, timeout_s: float = 15.0) -> int:
        """The node that answers DescribeQuorum as the quorum leader (polled)."""

        def find() -> int | None:
            for node_id in among or tuple(self.nodes):
                if not self.nodes[node_id].running:
                    continue
                with contextlib.suppress(ClientError, OSError):
                    if self.quorum_leader(node_id) == node_id:
                        return node_id
            return None

        leader = until(find, timeout_s, "a quorum leader")
        assert leader is not None
        return leader

    def create_topic(
        self,
        node_id: int,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: dict[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> ErrorCode:
        """CreateTopics through `node_id`; the topic's error code."""

        def build(module: ModuleType, version: int) -> Any:
            topic = make(
                module.CreatableTopic,
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                assignments=(),
                configs=tuple(
                    make(module.CreatableTopicConfig, name=k, value=v)
                    for k, v in (configs or {}).items()
                ),
            )
            return make(
                module.CreateTopicsRequest,
                topics=(topic,),
                timeout=datetime.timedelta(seconds=10),
                validate_only=False,
            )

        with self.client(node_id, timeout_s=timeout_s) as client:
            code: ErrorCode = client.call("create_topics", build).topics[0].error_code
        return code

    def topic_configs(self, node_id: int, topic: str) -> dict[str, str | None] | None:
        """The topic's own (dynamic) configs as `node_id` describes them (None: the node
        does not know the topic)."""

        def build(module: ModuleType, version: int) -> Any:
            return make(
                module.DescribeConfigsRequest,
                resources=(
                    make(
                        module.DescribeConfigsResource,
                        resource_type=2,  # TOPIC
                        resource_name=topic,
                        configuration_keys=None,
                    ),
                ),
                include_synonyms=False,
                include_documentation=False,
            )

        result = self.call(node_id, "describe_configs", build).results[0]
        if result.error_code is ErrorCode.unknown_topic_or_partition:
            return None
        if result.error_code is not ErrorCode.none:
            raise AssertionError(f"DescribeConfigs {topic} on node {node_id}: {result.error_code}")
        return {c.name: c.value for c in result.configs if int(c.config_source) == 1}

    def logs(self) -> str:
        return "\n".join(
            f"----- node {node.node_id} ({node.host}) -----\n{node.log()}"
            for node in self.nodes.values()
        )


@contextlib.contextmanager
def netns_cluster(workdir: Path, **options: Any) -> Iterator[NetnsCluster]:
    """`NetnsCluster` as a context manager function (for the bench)."""
    with NetnsCluster(workdir, **options) as cluster:
        yield cluster
