# syntax=docker/dockerfile:1
# The authgate image: `authgate serve` (auth service) and `authgate operator`, one entrypoint.
#   docker build -t <registry>/authgate:0.1.0 .
# Stage 1 builds wheels (authgate and every dependency); the final stage installs them from
# that directory only (--no-index) into a virtual environment, so it never compiles anything
# and holds no build tools.
#
# BASE_IMAGE: any image with python3.11 and its venv module. The default is the official
# Python image; `make image` builds a Debian bookworm base locally instead (hack/images/).
# Package downloads may need an extra CA bundle (a TLS-inspecting proxy): pass it as the
# build secret `pip_cert` (`--secret id=pip_cert,src=ca.crt`); it is mounted for the
# download step only and never becomes a layer.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY operator ./operator
# A virtual environment: a distribution's Python refuses system-wide pip (PEP 668).
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi && \
    python3 -m venv /build && \
    /build/bin/pip wheel --wheel-dir /wheels ".[operator]"

FROM ${BASE_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/authgate/bin:$PATH
# The wheels are bind-mounted from stage 1, not copied: they never become a layer. With
# --no-index only those wheels can be installed, so stage 1 fixes every version (DL3013).
# pip itself is removed from the environment afterwards: nothing installs at run time.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/authgate && \
    /opt/authgate/bin/pip install --no-index --find-links=/wheels "authgate[operator]" && \
    /opt/authgate/bin/pip uninstall --yes pip
# A fixed non-root uid (the chart's runAsUser), no home, no shell login. It gets a passwd
# entry: libraries look the user up (Kopf's getpass.getuser() fails on an unnamed uid).
RUN echo 'authgate:x:65532:65532:authgate:/nonexistent:/usr/sbin/nologin' >> /etc/passwd && \
    echo 'authgate:x:65532:' >> /etc/group
USER 65532:65532
EXPOSE 8080 8081 8082 9001 9090
ENTRYPOINT ["authgate"]
CMD ["--help"]
