#!/usr/bin/env bash
# Run Apptainer on a machine that has podman but no Apptainer (Debian 12): in a Debian sid
# container (container/apptainer.Containerfile), as uid 1000, in FOLDER, which is mounted at the
# same path and must be writable by uid 1000.
#
#   container/apptainer.sh FOLDER build bidsqc.sif singularity.def
#   container/apptainer.sh FOLDER run --cleanenv -B FOLDER bidsqc.sif FOLDER/bids FOLDER/qc participant
set -euo pipefail
folder=$(realpath "${1:?usage: $0 FOLDER APPTAINER_ARGUMENTS...}")
shift
cd "$(dirname "$0")/.."
. container/podman.sh

image=localhost/bidsqc-apptainer:sid
if ! podman image exists "$image"; then
    import_debian_base sid localhost/bidsqc-base:sid
    podman build --network host -t "$image" -f container/apptainer.Containerfile container >/dev/null
fi
# uid 1000 mounts the SIF with squashfuse (without it, every start unpacks the image first), so
# it needs /dev/fuse, which some hosts keep for root alone (0600).
podman run --rm --privileged --network host -v "$folder:$folder" -w "$folder" "$image" \
    sh -c 'chmod 0666 /dev/fuse && exec runuser -u builder -- apptainer "$@"' apptainer "$@"
