# syntax=docker/dockerfile:1
# The authgate image: `authgate serve` (auth service) and `authgate operator`, one entrypoint.
#   docker build -t <registry>/authgate:0.1.0 .
# Stage 1 builds wheels (authgate and every dependency); the final stage installs them from
# that directory only (--no-index), so it never compiles anything and holds no build tools.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels ".[operator]"

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheels are bind-mounted from stage 1, not copied: they never become a layer. With
# --no-index only those wheels can be installed, so stage 1 fixes every version (DL3013).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "authgate[operator]"
# A fixed non-root uid (the chart's runAsUser), no home, no shell login.
USER 65532:65532
EXPOSE 8080 8081 8082 9001 9090
ENTRYPOINT ["authgate"]
CMD ["--help"]
