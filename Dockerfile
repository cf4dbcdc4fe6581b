# One image for every clipsearch service: encoder, index, gateway and the search page.
#   docker build -t clipsearch .                         (CPU torch wheels)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t clipsearch:gpu .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CLIPSEARCH_HOME=/data/home

WORKDIR /opt/clipsearch
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY client ./client
COPY encoder_service ./encoder_service
COPY index_service ./index_service
RUN pip install --extra-index-url "${TORCH_INDEX}" '.[server,ui]'

RUN useradd --create-home --uid 10001 clipsearch && mkdir -p /data && chown clipsearch /data
USER clipsearch
VOLUME ["/data"]
ENTRYPOINT ["clipsearch"]
CMD ["--help"]
