#!/usr/bin/env bash
# Prepare this (Debian) machine for the container test, idempotently:
#   1. podman, runc, netavark, debootstrap, nftables (apt-get; podman-compose comes
#      from PyPI in run.sh: Debian's 1.0.3 ignores ipv4_address and mac_address);
#   2. /etc/containers/containers.conf: runc + cgroupfs, ulimits within the hard limits;
#   3. the local base image localhost/debian-local:bookworm (no registry reachable):
#      taken from podman's storage, else loaded from $OTTLA_BASE_TAR, else made with
#      debootstrap (about 1 minute) and saved to $OTTLA_BASE_TAR for the next run.
# Fails loudly when any step fails: a machine that cannot run podman fails the test.
set -euo pipefail

BASE=${OTTLA_BASE_IMAGE:-localhost/debian-local:bookworm}
BASE_TAR=${OTTLA_BASE_TAR:-/var/tmp/ottla-base.tar}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf 'container-setup: %s\n' "$*" >&2; }

need=()
for pair in podman:podman runc:runc netavark:netavark debootstrap:debootstrap nft:nftables \
    conmon:conmon; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/lib/podman/${pair%%:*}" ] \
        || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing ${need[*]} and not root: cannot install them"; exit 1
    fi
    say "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends podman runc netavark aardvark-dns conmon \
        containernetworking-plugins debootstrap nftables >/dev/null
fi

# crun refuses this cgroup setup and podman's default nofile=1048576 exceeds the hard limit.
conf=/etc/containers/containers.conf
if ! grep -qs '^runtime = "runc"' "$conf"; then
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    mkdir -p /etc/containers
    cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=30000:30000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    say "wrote $conf"
fi

if podman image exists "$BASE"; then
    :
elif [ -s "$BASE_TAR" ]; then
    say "loading $BASE from $BASE_TAR"
    podman load -q -i "$BASE_TAR" >/dev/null
else
    work=$(mktemp -d /var/tmp/ottla-rootfs.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    say "debootstrap bookworm (python3, venv) into $work: about a minute"
    if ! debootstrap --variant=minbase \
        --include=python3,python3-pip,python3-venv,python3-setuptools,python3-wheel,procps \
        bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
        tail -20 "$work/debootstrap.log" >&2
        say "debootstrap failed"; exit 1
    fi
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' \
        --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
    podman save -q -o "$BASE_TAR.tmp" "$BASE"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    say "made $BASE, saved to $BASE_TAR"
fi

# A machine where podman cannot start a container fails here, loudly.
podman run --rm --pull=never --network=none "$BASE" python3 -c 'print("podman ok")' >/dev/null \
    || { say "podman cannot run a container from $BASE on this machine"; exit 1; }
