#!/usr/bin/env bash
# The test suite on two workers (pytest-xdist, one test file per worker at a time, so module
# fixtures stay together). The Docker Engine is started here, before the workers, so that no
# worker's session stops it under the other; the script stops it afterwards if it started it.
# Each worker has its own servers, compose project and Kubernetes control plane on free ports.
#   scripts/test.sh [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
started_engine=0
if [ -x /usr/sbin/dockerd ]; then
  if ! bash scripts/testbed/docker.sh status >/dev/null 2>&1; then
    bash scripts/testbed/docker.sh start >/dev/null && started_engine=1
  fi
  bash scripts/testbed/docker.sh images
fi
.venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [ "$started_engine" = 1 ]; then
  bash scripts/testbed/docker.sh stop >/dev/null || echo "test.sh: could not stop the Docker Engine" >&2
fi
exit "$rc"
