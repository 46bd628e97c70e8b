# bidsqc as a BIDS App (docs/containers.md):
#   docker run --rm -v /data/bids:/data:ro -v /data/qc:/out bidsqc /data /out participant
#
# Build from a public base:        docker build -t bidsqc .
# The CUDA build (NVIDIA GPUs):     docker build --build-arg TORCH_VARIANT=cu126 -t bidsqc:cuda .
# Without Docker Hub, from a base of your own (what CI does): container/build_image.sh
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}

# PyTorch's own wheel index serves the CPU build ("cpu") and the CUDA builds ("cu126", ...);
# TORCH_INDEX="" takes torch from PIP_FIND_LINKS (a folder mounted for the build) or PyPI.
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}
# Seen by pip during the build only, never kept: a folder of wheels, a proxy's CA bundle.
ARG PIP_FIND_LINKS=
ARG PIP_CERT=
ARG TAG=bidsqc

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 bidsqc

# Every other dependency is pinned (container/constraints.txt), so that every image of one
# version registers an image the same way.
COPY container/constraints.txt /opt/bidsqc/constraints.txt
COPY pyproject.toml README.md /opt/bidsqc/src/
COPY bidsqc /opt/bidsqc/src/bidsqc
RUN python3 -m venv /opt/bidsqc/venv \
    && /opt/bidsqc/venv/bin/pip install --no-cache-dir \
        ${TORCH_INDEX:+--extra-index-url ${TORCH_INDEX}} "torch==${TORCH_VERSION}+${TORCH_VARIANT}" \
    && /opt/bidsqc/venv/bin/pip install --no-cache-dir \
        --constraint /opt/bidsqc/constraints.txt /opt/bidsqc/src \
    && rm -rf /opt/bidsqc/src

# The user is not root, and the image may be read-only: every cache goes under /tmp.
ENV PATH=/opt/bidsqc/venv/bin:$PATH \
    HOME=/home/bidsqc \
    MPLCONFIGDIR=/tmp/bidsqc-cache/matplotlib \
    XDG_CACHE_HOME=/tmp/bidsqc-cache \
    NIPYPE_NO_ET=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIDSQC_CONTAINER_TYPE=docker \
    BIDSQC_CONTAINER_TAG=${TAG}

# Fails the build if the template, the weights or the brain extraction cannot be read.
RUN bidsqc --version \
    && python -c "from bidsqc.brain_extraction import _localisation_network as n; n()" \
    && python -c "from bidsqc.data import load_template; load_template(1); load_template(2)"

USER bidsqc
WORKDIR /tmp
ENTRYPOINT ["bidsqc"]
