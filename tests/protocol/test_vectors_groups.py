"""Group-API wire vectors of real clients and ottla's answers (tests/vectors/, from capture.py).

Each client (librdkafka via confluent-kafka, kcat -G, aiokafka, kafka-python) joined a
group through a recording proxy in front of a real `ottla serve`, consumed, committed,
described and listed groups (and, where the client can, deleted its group); the last
request of each group API version and ottla's response to it are stored.

Proves: every stored request carries its group id, the member id and generation that
ottla's JoinGroup answer gave it (SyncGroup, Heartbeat, OffsetCommit, LeaveGroup), the
"consumer" protocol type with protocols subscribing to the consumed topic, and the
committed offsets of what it consumed; every response has the request's correlation
id, decodes with ottla's own decoder with the expected errors and fields (the member
described in DescribeGroups, committed offsets in OffsetFetch, librdkafka's
ConsumerGroupDescribe of a classic group answered GROUP_ID_NOT_FOUND), and decodes
byte-exactly (re-encoding gives the same bytes) with kafka-python's protocol classes
and, for aiokafka's own requests, with aiokafka's response classes.
"""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path
from typing import Any

import aiokafka.protocol.admin
import aiokafka.protocol.commit
import aiokafka.protocol.coordination
import aiokafka.protocol.group
import pytest
from aiokafka.protocol.api import Response as AioResponse
from kafka.protocol.admin import groups as kp_admin_groups
from kafka.protocol.consumer import group as kp_group
from kafka.protocol.metadata import find_coordinator as kp_find_coordinator

from ottla.protocol import ErrorCode, decode_request, decode_response

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
INDEX: list[dict[str, Any]] = json.loads((VECTORS / "index.json").read_text())
EXCHANGES = [entry for entry in INDEX if "response" in entry]
CLIENTS = ("librdkafka", "kcat", "aiokafka", "kafka-python")
GROUP_APIS = {8, 9, 10, 11, 12, 13, 14, 15, 16, 42}
GROUPS = {client: f"vectors-{client}" for client in CLIENTS}
TOPICS = {client: "vectors-kcat" if client == "kcat" else "vectors" for client in CLIENTS}
RECORDS_PER_PARTITION = 2  # what capture.py produced to each of the topic's two partitions

KAFKA_PYTHON_RESPONSES: dict[int, Any] = {
    8: kp_group.OffsetCommitResponse,
    9: kp_group.OffsetFetchResponse,
    10: kp_find_coordinator.FindCoordinatorResponse,
    11: kp_group.JoinGroupResponse,
    12: kp_group.HeartbeatResponse,
    13: kp_group.LeaveGroupResponse,
    14: kp_group.SyncGroupResponse,
    15: kp_admin_groups.DescribeGroupsResponse,
    16: kp_admin_groups.ListGroupsResponse,
    42: kp_admin_groups.DeleteGroupsResponse,
}


def _aiokafka_responses() -> dict[tuple[int, int], Any]:
    modules = (
        aiokafka.protocol.admin,
        aiokafka.protocol.commit,
        aiokafka.protocol.coordination,
        aiokafka.protocol.group,
    )
    found: dict[tuple[int, int], Any] = {}
    for module in modules:
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, AioResponse) and cls is not AioResponse:
                response: Any = cls
                found[(response.API_KEY, response.API_VERSION)] = response
    return found


AIOKAFKA_RESPONSES = _aiokafka_responses()


def _client(entry: dict[str, Any]) -> str:
    return str(entry["file"].split("/")[0])


def _exchange(client: str, api_key: int) -> tuple[Any, Any]:
    """(request body, response body) of `client`'s stored exchange of `api_key`."""
    (entry,) = [e for e in EXCHANGES if _client(e) == client and e["api_key"] == api_key]
    request = decode_request((VECTORS / entry["file"]).read_bytes()).body
    _, response = decode_response((VECTORS / entry["response"]).read_bytes(), request)
    return request, response


def test_every_client_sent_the_group_apis() -> None:
    sent = {(_client(e), e["api_key"]) for e in EXCHANGES}
    for client in CLIENTS:
        expected = {8, 9, 10, 11, 12, 13, 14}
        if client != "kcat":
            expected |= {15, 16}  # kcat has no admin calls
        if client in ("librdkafka", "kafka-python"):
            expected |= {42}  # aiokafka's admin client cannot delete groups
        assert {api for c, api in sent if c == client} >= expected, client


@pytest.mark.parametrize("entry", EXCHANGES, ids=[e["file"] for e in EXCHANGES])
def test_response_matches_request_and_ottla_decodes_it(entry: dict[str, Any]) -> None:
    request = decode_request((VECTORS / entry["file"]).read_bytes())
    correlation_id, response = decode_response(
        (VECTORS / entry["response"]).read_bytes(), request.body
    )
    assert correlation_id == entry["correlation_id"] == request.header.correlation_id
    errors = [getattr(response, "error_code", ErrorCode.none)]
    errors += [g.error_code for g in getattr(response, "groups", ()) if hasattr(g, "error_code")]
    errors += [r.error_code for r in getattr(response, "results", ())]
    errors += [c.error_code for c in getattr(response, "coordinators", ())]
    errors += [
        p.error_code
        for t in getattr(response, "topics", ())
        for p in getattr(t, "partitions", ())
        if hasattr(p, "error_code")
    ]
    if entry["api_key"] == 69:  # librdkafka asks ConsumerGroupDescribe first, then falls back
        assert errors[1:] == [ErrorCode.group_id_not_found]
    else:
        assert set(errors) == {ErrorCode.none}


@pytest.mark.parametrize("client", CLIENTS)
def test_requests_carry_group_member_generation_and_offsets(client: str) -> None:
    group, topic = GROUPS[client], TOPICS[client]
    join, joined = _exchange(client, 11)
    assert join.group_id == group and join.protocol_type == "consumer"
    assert join.member_id == joined.member_id != ""  # the rejoin after MEMBER_ID_REQUIRED
    assert joined.leader == joined.member_id and joined.generation_id >= 1
    assert join.protocols and all(topic.encode() in p.metadata for p in join.protocols)
    assert joined.protocol_name in {p.name for p in join.protocols}
    member, generation = joined.member_id, joined.generation_id

    sync, synced = _exchange(client, 14)
    assert (sync.group_id, sync.member_id, sync.generation_id) == (group, member, generation)
    assert [a.member_id for a in sync.assignments] == [member]  # the leader assigns
    assert synced.assignment == sync.assignments[0].assignment
    assert topic.encode() in synced.assignment

    beat, _ = _exchange(client, 12)
    assert (beat.group_id, beat.member_id, beat.generation_id) == (group, member, generation)

    leave, _ = _exchange(client, 13)
    leaving = (
        [leave.member_id] if hasattr(leave, "member_id") else [m.member_id for m in leave.members]
    )
    assert (leave.group_id, leaving) == (group, [member])

    commit, _ = _exchange(client, 8)
    assert commit.group_id == group
    assert (commit.member_id, commit.generation_id_or_member_epoch) == (member, generation)
    (committed_topic,) = commit.topics
    assert committed_topic.name == topic
    assert sorted((p.partition_index, p.committed_offset) for p in committed_topic.partitions) == [
        (0, RECORDS_PER_PARTITION),
        (1, RECORDS_PER_PARTITION),
    ]

    fetch, fetched = _exchange(client, 9)
    if hasattr(fetch, "groups"):  # v8+: several groups per request
        (fetch_group,) = fetch.groups
        (fetched_group,) = fetched.groups
        assert fetch_group.group_id == fetched_group.group_id == group
        offsets = {
            (p.partition_index, p.committed_offset)
            for t in fetched_group.topics
            for p in t.partitions
        }
    else:
        assert fetch.group_id == group
        offsets = {
            (p.partition_index, p.committed_offset) for t in fetched.topics for p in t.partitions
        }
    # kcat fetches its offsets only when it joins (nothing committed yet), the others after
    # their commit.
    expected = -1 if client == "kcat" else RECORDS_PER_PARTITION
    assert (0, expected) in offsets and offsets <= {(0, expected), (1, expected)}

    find, found = _exchange(client, 10)
    keys = find.coordinator_keys if hasattr(find, "coordinator_keys") else (find.key,)
    assert keys == (group,) and find.key_type == 0
    coordinators = found.coordinators if hasattr(found, "coordinators") else (found,)
    assert [c.node_id for c in coordinators] == [1]


@pytest.mark.parametrize("client", ["librdkafka", "aiokafka", "kafka-python"])
def test_admin_requests_name_the_group_and_see_its_member(client: str) -> None:
    group = GROUPS[client]
    _, joined = _exchange(client, 11)
    describe, described = _exchange(client, 15)
    assert describe.groups == (group,)
    (state,) = described.groups
    assert (state.group_id, state.group_state, state.protocol_type) == (group, "Stable", "consumer")
    assert [m.member_id for m in state.members] == [joined.member_id]
    assert state.protocol_data == joined.protocol_name
    _, listed = _exchange(client, 16)
    assert group in {g.group_id for g in listed.groups}
    if client != "aiokafka":
        delete, deleted = _exchange(client, 42)
        assert delete.groups_names == (group,)
        assert [r.group_id for r in deleted.results] == [group]


KAFKA_PYTHON_DECODABLE = [e for e in EXCHANGES if e["api_key"] in KAFKA_PYTHON_RESPONSES]


@pytest.mark.parametrize(
    "entry", KAFKA_PYTHON_DECODABLE, ids=[e["file"] for e in KAFKA_PYTHON_DECODABLE]
)
def test_kafka_python_classes_decode_ottla_responses_exactly(entry: dict[str, Any]) -> None:
    response_class = KAFKA_PYTHON_RESPONSES[entry["api_key"]]  # none for ConsumerGroupDescribe
    frame = (VECTORS / entry["response"]).read_bytes()
    version = entry["api_version"]
    decoded = response_class.decode(frame, version=version, header=True)
    assert decoded._header.correlation_id == entry["correlation_id"]
    header_bytes = 5 if response_class.flexible_version_q(version) else 4  # + tagged fields
    body = response_class.decode(frame[header_bytes:], version=version)
    body._header = None  # kafka-python encodes a decoded message only once this is set
    assert bytes(body.encode(version=version)) == frame[header_bytes:]


@pytest.mark.parametrize(
    "entry",
    [e for e in EXCHANGES if _client(e) == "aiokafka"],
    ids=[e["file"] for e in EXCHANGES if _client(e) == "aiokafka"],
)
def test_aiokafka_classes_decode_ottla_responses_to_its_requests(entry: dict[str, Any]) -> None:
    response_class = AIOKAFKA_RESPONSES[(entry["api_key"], entry["api_version"])]
    frame = (VECTORS / entry["response"]).read_bytes()
    assert int.from_bytes(frame[:4], "big") == entry["correlation_id"]
    body = io.BytesIO(frame[4:])  # aiokafka's versions here all use response header v0
    decoded = response_class.decode(body)
    assert body.tell() == len(frame) - 4
    assert decoded.encode() == frame[4:]
    fields = decoded.to_object()
    if "error_code" in fields:
        assert fields["error_code"] == 0
    if entry["api_key"] == 11:
        assert fields["member_id"] == fields["leader_id"] != ""
