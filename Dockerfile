# One image for every Pricewatch role (worker, scraper, sinks, api, demo shop): the command
# picks the role, e.g. `docker run pricewatch:0.1.0 worker`. See docker-compose.yml.
#
# Two stages: the builder makes the pricewatch wheel and installs it with the pinned
# dependencies of constraints.txt (the versions the tests run with) into a virtualenv; the
# runtime stage copies only that virtualenv. Without the test extras: none is imported at
# run time. tests/deploy/test_dockerfile.py checks this file and runs the builder's
# RUN step on the machine (no Docker engine needed).

# An exact patch release, not a moving tag. For byte-for-byte rebuilds pin the digest too:
# --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SRC=/src \
    WHEELS=/wheels \
    VIRTUAL_ENV=/opt/pricewatch
WORKDIR /src
# What the wheel is built from (pyproject's packages.find includes, plus its readme).
COPY pyproject.toml constraints.txt README.md ./
COPY pricewatch pricewatch
COPY streams streams
COPY producers producers
COPY sinks sinks
COPY api api
COPY grafana grafana
COPY launcher launcher
# --only-binary: every dependency comes as a wheel, so the slim image needs no compiler and
# a dependency that would need one fails here instead of half-way through a build.
RUN python -m pip wheel --no-deps --wheel-dir "$WHEELS" "$SRC" \
 && python -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/python" -m pip install --only-binary=:all: \
      -c "$SRC/constraints.txt" "$WHEELS"/pricewatch-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pricewatch" \
      org.opencontainers.image.description="Self-hostable streaming price tracker" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid:gid, so orchestrators can verify runAsNonRoot.
RUN groupadd --system --gid 10001 pricewatch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pricewatch \
      --create-home --shell /usr/sbin/nologin pricewatch
COPY --from=builder /opt/pricewatch /opt/pricewatch
ENV PATH=/opt/pricewatch/bin:$PATH \
    VIRTUAL_ENV=/opt/pricewatch \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PRICEWATCH_DATA_DIR=/var/lib/pricewatch
USER 10001:10001
WORKDIR /var/lib/pricewatch
# Documentation only: the API, the demo shop and every process's /metrics.
EXPOSE 8080 8081 9100
ENTRYPOINT ["pricewatch"]
CMD ["--help"]
