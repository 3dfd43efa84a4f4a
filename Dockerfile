# The user-code image: zk_pipelines and its pinned dependencies, for Dagster's Helm chart (deploy/helm-values.yaml).
# The same image serves the code location (`dagster api grpc --module-name zk_pipelines.definitions`, which the
# chart runs) and runs each run (K8sRunLauncher starts it with `dagster api execute_run`).
#
#   docker build -t registry.example.com/zk-pipelines:0.1.0 .
#
# A production install: no sandboxes, no test tools; the Dagster family, dagster-postgres and dagster-k8s at the
# versions constraints.txt pins (zk_pipelines_tests/test_deploy_image.py runs these steps in a plain venv).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/zk_pipelines

COPY pyproject.toml constraints.txt README.md ./
COPY zk_pipelines ./zk_pipelines

RUN pip install -c constraints.txt ".[postgres,k8s]"

# Dagster's chart mounts the instance's dagster.yaml into DAGSTER_HOME; runs write nothing else there.
RUN mkdir -p /opt/dagster/dagster_home && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin zk \
    && chown zk /opt/dagster/dagster_home
USER 10001

EXPOSE 3030
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", "--module-name", "zk_pipelines.definitions"]
