# syntax=docker/dockerfile:1
# One image, three commands: `rop worker` (the default), `rop api`, `rop codec-server`.
# Dependencies come from deploy/requirements.lock, pinned with hashes, as wheels only: no
# compiler is installed in either stage. The final stage runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/requirements.lock ./requirements.lock
RUN python -m venv /opt/rop \
    && /opt/rop/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock
COPY pyproject.toml README.md worker.py ./
COPY rop_domain ./rop_domain
COPY rop_runtime ./rop_runtime
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
# Our own code, without resolving anything again: every dependency is already in place.
# Then pip and setuptools go: the running image installs nothing.
RUN /opt/rop/bin/pip install --no-deps --no-build-isolation . \
    && /opt/rop/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && /opt/rop/bin/python -m compileall -q /opt/rop/lib

FROM ${PYTHON_IMAGE} AS runtime
# The base image's own pip and setuptools, where it has them (python:*-slim does; Debian's
# python3 package does not): nothing in the running image can install anything.
RUN if python -m pip --version > /dev/null 2>&1; then \
        python -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi \
    && groupadd --system --gid 10001 rop \
    && useradd --system --uid 10001 --gid rop --no-create-home --shell /usr/sbin/nologin rop
COPY --from=build /opt/rop /opt/rop
ENV PATH=/opt/rop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROP_LOG_FORMAT=json \
    ROP_API_HOST=0.0.0.0 \
    ROP_WORKER_METRICS_ADDRESS=0.0.0.0:9464 \
    ROP_WORKER_READY_FILE=/tmp/rop-worker-ready
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8234 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "rop_runtime.healthcheck"]
ENTRYPOINT ["rop"]
CMD ["worker"]
