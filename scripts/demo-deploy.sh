#!/usr/bin/env bash
# The deploy demo on the compose stack (scripts/testbed/docker.sh): deploy v2 (passes the
# health gate), then v2-errors (healthy, but 20 % of its API answers are 500: caught by the
# error rate and rolled back automatically), then the history. About 40 s with the short
# gate below. Uses its own compose project and ports, and removes them at the end.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB="$REPO/scripts/testbed/docker.sh"
OPS="$REPO/.venv/bin/travellr-ops"
WORK=$(mktemp -d)
PROJECT=travellrdemo$$
free_port() { "$REPO/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export DOCKER_HOST; DOCKER_HOST=$(bash "$TB" start)
bash "$TB" images
export TRAVELLR_BACKEND_PORT TRAVELLR_REDIS_PORT TRAVELLR_MONGO_PORT
TRAVELLR_BACKEND_PORT=$(free_port) TRAVELLR_REDIS_PORT=$(free_port) TRAVELLR_MONGO_PORT=$(free_port)
cp "$REPO/config/docker-compose.yml" "$WORK/docker-compose.yml"  # deploy keeps the tag in $WORK/.env
cleanup() { docker-compose -p "$PROJECT" -f "$WORK/docker-compose.yml" down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
echo "== the stack ($PROJECT), backend v1 on 127.0.0.1:$TRAVELLR_BACKEND_PORT"
bash "$TB" stack-up "$PROJECT" 2>/dev/null || docker-compose -p "$PROJECT" -f "$WORK/docker-compose.yml" up -d
export TRAVELLR_PLATFORM=compose TRAVELLR_STATE_DIR="$WORK/state"
export TRAVELLR_COMPOSE__PROJECT=$PROJECT TRAVELLR_COMPOSE__FILE="$WORK/docker-compose.yml"
export TRAVELLR_COMPOSE__DOCKER_HOST=$DOCKER_HOST
export TRAVELLR_API__URL=http://127.0.0.1:$TRAVELLR_BACKEND_PORT
export TRAVELLR_MONGO__URI="mongodb://127.0.0.1:$TRAVELLR_MONGO_PORT/travellr?directConnection=true"
export TRAVELLR_REDIS__URL=redis://127.0.0.1:$TRAVELLR_REDIS_PORT/0
export TRAVELLR_BACKUP__DIR="$WORK/backups"
export TRAVELLR_DEPLOY__SAMPLE_INTERVAL_S=2 TRAVELLR_DEPLOY__FAIL_AFTER=2
export TRAVELLR_THRESHOLDS__API_RESPONSE_MS=1000
echo; echo "== travellr-ops deploy run --image v2 --watch 6s"
"$OPS" deploy run --image v2 --watch 6s --yes
echo; echo "== travellr-ops deploy run --image v2-errors --watch 20s --no-backup (rolled back)"
"$OPS" deploy run --image v2-errors --watch 20s --no-backup --yes || echo "(exit $?: rolled back, as it should)"
echo; echo "== travellr-ops deploy history"
"$OPS" deploy history
