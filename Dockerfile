# bidsqc as a BIDS App:  docker run -v /data/bids:/bids:ro -v /data/qc:/out bidsqc /bids /out participant
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    BIDSQC_CONTAINER_TYPE=docker \
    BIDSQC_CONTAINER_TAG=bidsqc:0.1.0

# The CPU build of torch first: a bare requirement would pull several GB of CUDA libraries.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/bidsqc
COPY pyproject.toml README.md ./
COPY bidsqc ./bidsqc
RUN pip install . \
    && python -c "from bidsqc.data import load_template; load_template(1); load_template(2)" \
    && useradd --create-home --uid 1000 bidsqc

USER bidsqc
WORKDIR /home/bidsqc
ENTRYPOINT ["bidsqc"]
