#!/usr/bin/env bash
# The container test (`make container-test`, run by .ci/run): ottla's Dockerfile and
# compose.yaml, for real, with podman. Sets the machine up (setup.sh), builds the
# image offline from a locally made base image, starts the three nodes with
# `podman-compose -f compose.yaml up -d`, runs scenario.py from the host with
# confluent-kafka, and always tears everything down (`down -v`; the image stays cached).
#
#   OTTLA_CONTAINER_RF=3|1   replication factor of the test topic (default 3; with 1 the
#                            victim's partitions go offline and come back instead)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$EPOCHREALTIME
say() { printf '[%6ss] container-test: %s\n' \
    "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')" "$*"; }

BASE=localhost/debian-local:bookworm
IMAGE=localhost/ottla:dev                    # compose.yaml's image
TOOLS=${OTTLA_CONTAINER_TOOLS:-/var/tmp/ottla-container-tools}
PYTHON=$ROOT/.venv/bin/python          # confluent-kafka (make's $(STAMP))
RF=${OTTLA_CONTAINER_RF:-3}
CONTAINERS=(ottla-node1 ottla-node2 ottla-node3)
BOOTSTRAP=10.89.91.11:9092,10.89.91.12:9092,10.89.91.13:9092

OTTLA_BASE_IMAGE=$BASE bash tests/containers/setup.sh
# Debian's podman-compose 1.0.3 ignores ipv4_address and mac_address: use PyPI's.
if ! "$TOOLS/bin/podman-compose" version >/dev/null 2>&1; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q 'podman-compose>=1.2,<2'
fi
compose() { "$TOOLS/bin/podman-compose" -f compose.yaml "$@"; }
say "machine ready: podman $(podman version -f '{{.Client.Version}}'), $("$TOOLS/bin/podman-compose" version | head -1)"

teardown() {
    local rc=$?
    set +e
    if [ $rc -ne 0 ]; then
        for c in "${CONTAINERS[@]}"; do
            echo "---- last log lines of $c"; podman logs --tail 25 "$c" 2>&1 | grep -v systemd
        done
    fi
    compose down -v -t 5 >/dev/null 2>&1
    podman rm -f -t 0 "${CONTAINERS[@]}" >/dev/null 2>&1
    podman network rm -f ottla_ottla >/dev/null 2>&1
    podman volume rm -f ottla_node1-data ottla_node2-data ottla_node3-data >/dev/null 2>&1
    say "torn down (exit $rc)"
    exit $rc
}
trap teardown EXIT
compose down -v -t 0 >/dev/null 2>&1 || true   # leftovers of an interrupted run

# Offline build: ottla and its runtime dependencies as wheels in the build context.
rm -rf build/wheels
"$PYTHON" -m pip wheel -q --disable-pip-version-check . -w build/wheels >/dev/null 2>&1 \
    || "$PYTHON" -m pip wheel --disable-pip-version-check . -w build/wheels
# --format docker keeps HEALTHCHECK (the OCI format drops it).
podman build -q --format docker --pull=never --network=none \
    --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" . >/dev/null
say "built $IMAGE from $BASE ($(ls build/wheels | wc -l) wheels, no network)"

# podman has no systemd here to schedule health checks; scenario.py runs them itself.
compose up -d >build/compose-up.log 2>&1 || { cat build/compose-up.log; exit 1; }
for c in "${CONTAINERS[@]}"; do
    [ "$(podman inspect -f '{{.State.Running}}' "$c")" = true ] || { say "$c not running"; exit 1; }
done
say "compose up: ${CONTAINERS[*]}"

"$PYTHON" tests/containers/scenario.py --replication-factor "$RF" \
    --bootstrap "$BOOTSTRAP" "${CONTAINERS[@]}"
say "PASS"
