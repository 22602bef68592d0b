"""The `netns_cluster` fixture: three ottla voters on three network namespaces.

Skips (with the reason) only where network namespaces cannot be created; CI runs as
root with iproute2 and nftables (.ci/run installs them), so there the tests run. A test adds
settings for every node with `@pytest.mark.netns_overrides("key=value", ...)`. The
nodes' logs are printed at teardown (pytest shows them for failing tests), and
teardown checks that no namespace or veth of the cluster is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.harness import NetnsCluster, unavailable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns_overrides(*settings): extra KEY=VALUE settings for every node"
    )


@pytest.fixture(scope="session")
def netns_reason() -> str | None:
    return unavailable()


@pytest.fixture
def netns_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, netns_reason: str | None
) -> Iterator[NetnsCluster]:
    if netns_reason is not None:
        pytest.skip(netns_reason)
    marker = request.node.get_closest_marker("netns_overrides")
    cluster = NetnsCluster(tmp_path, overrides=marker.args if marker else ())
    with cluster:
        try:
            yield cluster
        finally:
            print(cluster.logs())
    assert cluster.leftovers() == [], "teardown left namespaces or links behind"
