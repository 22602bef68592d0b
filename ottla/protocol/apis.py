"""The one registry of the APIs ottla serves and their version ranges.

Every (api_key, version) here is decodable by kio, so what ottla advertises in
ApiVersions is always what it can decode: `SUPPORTED_APIS` is checked against
kio's schemas when this module is imported, and ApiVersions responses are built
from it (`api_version_entries`).

One deliberate exception, copied from Apache Kafka 4.0 (KAFKA-18659): Produce is
advertised from v0 although only v3+ is served (kio has no v0-v2 schemas and
those versions carry message formats v0/v1 that Kafka 4 refuses). librdkafka
derives its compression support from the advertised Produce range and would
refuse to compress against a broker advertising v3+ only. A request at v0-v2 is
answered UNSUPPORTED_VERSION.

An API joins the registry in the same change that adds its handler; the broker's
dispatcher checks that every registered API has one.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from kio.index import load_entity_module
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from ottla.protocol.errors import ErrorCode, ProtocolError

__all__ = ["SUPPORTED_APIS", "ApiRegistry", "ApiSpec", "build_api_versions_response"]


@dataclass(frozen=True)
class ApiSpec:
    """One API: its key, Kafka's name, the advertised range and the decodable floor."""

    api_key: int
    name: str
    min_version: int
    max_version: int
    # Lowest version ottla can decode; above `min_version` only for Produce.
    decodable_min: int
    # Keyed by `_key(version, entity_type)`, an int: hashing an Enum runs Python code,
    # and these are asked several times per request.
    _modules: dict[int, ModuleType] = field(default_factory=dict, repr=False, compare=False)
    _readers: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    _types: dict[int, type[Any]] = field(default_factory=dict, repr=False, compare=False)

    def serves(self, version: int) -> bool:
        """True when a request at `version` is decoded and handled."""
        return self.decodable_min <= version <= self.max_version

    def advertises(self, version: int) -> bool:
        """True when `version` lies in the advertised range."""
        return self.min_version <= version <= self.max_version

    def _module(self, version: int, entity_type: EntityType) -> ModuleType:
        key = _key(version, entity_type)
        module = self._modules.get(key)
        if module is None:
            module = load_entity_module(self.name, version, entity_type)  # type: ignore[arg-type]
            self._modules[key] = module
        return module

    def _payload_type(self, version: int, entity_type: EntityType) -> type[Any]:
        key = _key(version, entity_type)
        cls = self._types.get(key)
        if cls is None:
            cls = _payload_class(self._module(version, entity_type), entity_type)
            self._types[key] = cls
        return cls

    def request_type(self, version: int) -> type[Any]:
        """kio's request dataclass for `version` (cached: handlers ask on every request)."""
        return self._payload_type(version, EntityType.request)

    def response_type(self, version: int) -> type[Any]:
        """kio's response dataclass for `version` (cached)."""
        return self._payload_type(version, EntityType.response)

    def request_module(self, version: int) -> ModuleType:
        """kio's request module (its nested entity classes) for `version`."""
        return self._module(version, EntityType.request)

    def response_module(self, version: int) -> ModuleType:
        """kio's response module (its nested entity classes) for `version`."""
        return self._module(version, EntityType.response)

    def request_reader(self, version: int) -> Any:
        """kio's native reader for the request body at `version` (cached)."""
        reader = self._readers.get(version)
        if reader is None:
            reader = entity_reader(self.request_type(version))
            self._readers[version] = reader
        return reader

    def response_writer(self, version: int) -> Any:
        """kio's writer for the response body at `version` (cached by kio)."""
        return entity_writer(self.response_type(version))

    def flexible(self, version: int) -> bool:
        """True when `version` uses the compact/tagged-field (flexible) encoding."""
        if self.serves(version):
            return bool(self.request_type(version).__flexible__)
        # A version ottla does not decode: guess as Kafka's clients would encode it.
        return version > self.max_version and bool(self.request_type(self.max_version).__flexible__)


def _key(version: int, entity_type: EntityType) -> int:
    return version * 2 + (entity_type is EntityType.response)


def _payload_class(module: ModuleType, entity_type: EntityType) -> type[Any]:
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) is entity_type:
            return value
    raise LookupError(f"no {entity_type.name} class in {module.__name__}")


class ApiRegistry(Mapping[int, ApiSpec]):
    """api_key -> ApiSpec; the single source for ApiVersions and request decoding."""

    def __init__(self, specs: list[ApiSpec]) -> None:
        self._specs = {spec.api_key: spec for spec in sorted(specs, key=lambda s: s.api_key)}
        if len(self._specs) != len(specs):
            raise ValueError("duplicate api key in the registry")

    def __getitem__(self, api_key: int) -> ApiSpec:
        return self._specs[api_key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def spec_for(self, api_key: int, api_version: int) -> ApiSpec:
        """The spec serving (api_key, api_version), or ProtocolError(UNSUPPORTED_VERSION)."""
        spec = self._specs.get(api_key)
        if spec is None:
            raise ProtocolError(ErrorCode.unsupported_version, f"unknown api key {api_key}")
        if not spec.serves(api_version):
            raise ProtocolError(
                ErrorCode.unsupported_version,
                f"{spec.name} v{api_version} is not supported "
                f"(supported: v{spec.decodable_min}-v{spec.max_version})",
            )
        return spec

    def api_version_entries(self) -> list[tuple[int, int, int]]:
        """(api_key, min_version, max_version) of every advertised API, by key."""
        return [(s.api_key, s.min_version, s.max_version) for s in self._specs.values()]


def make_spec(
    name: str, max_version: int | None = None, advertised_min: int | None = None
) -> ApiSpec:
    """An ApiSpec for kio's schema `name`, checked against the versions kio has."""
    api_keys = {n: k for k, n in api_key_map.items()}
    versions = sorted(schema_name_map[name])
    low, high = versions[0], versions[-1]
    top = high if max_version is None else max_version
    if not low <= top <= high:
        raise ValueError(f"{name}: v{top} is outside kio's v{low}-v{high}")
    return ApiSpec(
        api_key=api_keys[name],
        name=name,
        min_version=low if advertised_min is None else advertised_min,
        max_version=top,
        decodable_min=low,
    )


# The APIs ottla serves. Ranges are Apache Kafka 4.1's (which kio 0.6 mirrors);
# an API is added here together with its handler.
SUPPORTED_APIS = ApiRegistry(
    [
        make_spec("api_versions"),
        make_spec("produce", advertised_min=0),
        make_spec("fetch"),
        make_spec("list_offsets"),
        make_spec("metadata"),
        make_spec("offset_for_leader_epoch"),
        make_spec("create_topics"),
        make_spec("delete_topics"),
        make_spec("create_partitions"),
        make_spec("delete_records"),
        make_spec("init_producer_id"),
        make_spec("describe_configs"),
        make_spec("alter_configs"),
        make_spec("incremental_alter_configs"),
        make_spec("describe_log_dirs"),
        make_spec("alter_replica_log_dirs"),
        make_spec("list_config_resources"),
        make_spec("elect_leaders"),
        make_spec("alter_partition_reassignments"),
        make_spec("list_partition_reassignments"),
        make_spec("describe_cluster"),
        make_spec("describe_topic_partitions"),
        make_spec("find_coordinator"),
        make_spec("join_group"),
        make_spec("sync_group"),
        make_spec("heartbeat"),
        make_spec("leave_group"),
        make_spec("offset_commit"),
        make_spec("offset_fetch"),
        make_spec("offset_delete"),
        make_spec("describe_groups"),
        make_spec("list_groups"),
        make_spec("delete_groups"),
        make_spec("consumer_group_heartbeat"),
        make_spec("consumer_group_describe"),
        # KRaft (KIP-595, KIP-996): the metadata quorum, served by the Raft driver.
        make_spec("vote"),
        make_spec("begin_quorum_epoch"),
        make_spec("end_quorum_epoch"),
        make_spec("fetch_snapshot"),
        make_spec("describe_quorum"),
        # Broker-internal: a non-leader forwards controller requests to the quorum leader,
        # and brokers register, heartbeat and get producer-id blocks from it.
        make_spec("envelope"),
        make_spec("broker_registration"),
        make_spec("broker_heartbeat"),
        make_spec("allocate_producer_ids"),
        make_spec("alter_partition"),
    ]
)


_API_VERSIONS_KEY = 18


def build_api_versions_response(
    version: int,
    error_code: ErrorCode = ErrorCode.none,
    registry: ApiRegistry | None = None,
) -> Any:
    """kio's ApiVersionsResponse at `version` listing every API `registry` advertises.

    No tagged fields (no features). For UNSUPPORTED_VERSION the body is v0 whatever
    `version` is, as Kafka answers a client whose ApiVersions version it does not
    know (KIP-511): the client reads the v0 body and retries at a version it lists.
    """
    apis = SUPPORTED_APIS if registry is None else registry
    if error_code is ErrorCode.unsupported_version:
        version = 0
    spec = apis[_API_VERSIONS_KEY] if _API_VERSIONS_KEY in apis else SUPPORTED_APIS[18]
    module = spec.response_module(version)
    response_type = spec.response_type(version)
    entries = tuple(
        module.ApiVersion(api_key=key, min_version=low, max_version=high)
        for key, low, high in apis.api_version_entries()
    )
    if version == 0:
        return response_type(error_code=error_code, api_keys=entries)
    return response_type(
        error_code=error_code, api_keys=entries, throttle_time=datetime.timedelta(0)
    )
