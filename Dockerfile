# The freshstream image for docker-compose.yml: ingress and worker run from it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY connectors connectors
COPY schemas schemas
RUN pip install --no-cache-dir . && useradd --system --uid 10001 freshstream
USER freshstream
ENV FRESHSTREAM_DATA_DIR=/tmp/freshstream
ENTRYPOINT ["freshstream"]
