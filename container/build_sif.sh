#!/usr/bin/env bash
# Build bidsqc.sif for Apptainer/Singularity from the OCI image, with this repository's
# singularity.def: the image saved as an OCI archive (container/build_image.sh --archive, unless
# FOLDER holds bidsqc.oci.tar already), converted by Apptainer (container/apptainer.sh where the
# machine has none).
#
#   container/build_sif.sh FOLDER             # -> FOLDER/bidsqc.sif
set -euo pipefail
cd "$(dirname "$0")/.."
folder=$(realpath -m "${1:?usage: $0 FOLDER}")
[ -f "$folder/bidsqc.oci.tar" ] || container/build_image.sh --archive "$folder"
cp singularity.def "$folder/"
chown 1000 "$folder" "$folder/bidsqc.oci.tar" "$folder/singularity.def"
if command -v apptainer >/dev/null && [ "$(id -u)" != 0 ]; then
    (cd "$folder" && apptainer build --force bidsqc.sif singularity.def)
else
    container/apptainer.sh "$folder" build --force bidsqc.sif singularity.def
fi
echo "built $folder/bidsqc.sif"
