#!/usr/bin/env bash
# Build bidsqc's OCI image with podman, from this repository alone: the Dockerfile on a Debian
# base made with debootstrap (container/podman.sh), no image pulled from a registry.
#
#   container/build_image.sh                  # -> localhost/bidsqc:<version>
#   container/build_image.sh --archive DIR    # and DIR/bidsqc.oci.tar, for Apptainer
#   container/build_image.sh -- --no-cache    # what follows -- goes to podman build
#
# Needs root and Debian's podman buildah debootstrap runc uidmap fuse-overlayfs slirp4netns.
# pip reaches PyPI from the build; where this machine's pip is configured with a folder of
# wheels (find-links) holding torch, that folder is mounted for the build, and so is a CA
# bundle for a TLS-intercepting proxy: neither is kept in the image.
set -euo pipefail
cd "$(dirname "$0")/.."
. container/podman.sh

archive=""
if [ "${1:-}" = --archive ]; then
    archive=${2:?--archive needs a folder}
    shift 2
fi
[ "${1:-}" = -- ] && shift

version=$(bidsqc_version)
image=localhost/bidsqc:$version
base=localhost/bidsqc-base:bookworm
import_debian_base bookworm "$base"

build=(--network host --build-arg "BASE=$base" --build-arg "TAG=bidsqc:$version")
wheels=$(python3 -m pip config get global.find-links 2>/dev/null || true)
if [ -n "$wheels" ] && compgen -G "$wheels/torch-*+cpu-*.whl" >/dev/null; then
    build+=(-v "$wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX=)
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    build+=(-v /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro --build-arg PIP_CERT=/run/build-ca.crt)
fi
podman build "${build[@]}" "$@" -t "$image" .
echo "built $image"

if [ -n "$archive" ]; then
    mkdir -p "$archive"
    rm -f "$archive/bidsqc.oci.tar"
    podman save --format oci-archive -o "$archive/bidsqc.oci.tar" "$image"
    echo "saved $archive/bidsqc.oci.tar"
fi
