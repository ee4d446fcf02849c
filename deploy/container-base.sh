#!/usr/bin/env bash
# Build the base image for podman where no image can be pulled: Debian bookworm (minbase) with Python 3.11
# from the machine's Debian mirror, imported as $1 (default localhost/python-base:bookworm). Installs
# podman, runc and debootstrap first if they are missing. Does nothing if the image exists.
set -euo pipefail
image=${1:-localhost/python-base:bookworm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-/tmp/digitops-containers.conf}
[ -f "$CONTAINERS_CONF" ] || printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
    apt-get update -qq && apt-get install -y -qq podman runc debootstrap >/dev/null
fi
podman="podman --runtime runc --storage-driver vfs"
if $podman image exists "$image"; then
    echo "$image exists"
    exit 0
fi
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
rootfs=$(mktemp -d)
chmod 755 "$rootfs"             # the image's / (mktemp makes it 0700: only root could enter)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
tar -C "$rootfs" -c . | $podman import - "$image"
echo "built $image"
