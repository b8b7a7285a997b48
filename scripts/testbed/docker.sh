#!/usr/bin/env bash
# A real Docker Engine (Debian's docker.io 20.10) on this machine for travellr-ops' tests and
# sandbox, and the locally built images of the Travellr stack (see ../shared/TESTBED.md).
#
#   docker.sh install   apt-get docker.io docker-compose busybox-static debootstrap if missing
#   docker.sh start     our own dockerd (no bridge, no iptables: containers use the host network
#                       on 127.0.0.1 only); leaves a running one alone; prints its DOCKER_HOST
#   docker.sh stop      stop that dockerd (by its PID) and wait for it to go
#   docker.sh host      print the DOCKER_HOST of our engine
#   docker.sh status    exit 0 when our engine is running, 1 when not
#   docker.sh stack-up [PROJECT]    the Travellr stack from config/docker-compose.yml (compose
#                       project PROJECT, default travellr), waited on until every service is
#                       healthy; ports/tag from TRAVELLR_BACKEND_PORT... as the compose file says
#   docker.sh stack-down [PROJECT]  remove that project's containers and its volumes (the
#                       MongoDB and Redis data)
#   docker.sh images    build the images (cached: rebuilt only when their recipe changes):
#                         travellr-backend:v1, :v2 (healthy), :v2-broken (health check fails),
#                         :v2-errors (healthy, but 20 % of /api/* answer 500: BACKEND_ERROR_PCT)
#                         travellr-redis:testbed, travellr-mongodb:testbed
#   docker.sh ops-image travellr-ops itself (config/docker/Dockerfile) as travellr-ops:VERSION
#                       and :latest, from the checkout's wheel; cached by a hash of the recipe
#                       (the Dockerfile, pyproject.toml, src/); prints the image's name
#
# The engine keeps everything under $TRAVELLR_DOCKER_DIR (default
# /var/lib/travellr-testbed/docker): data-root, exec-root, socket, pidfile, log. The Debian
# root file system the images stand on is built with debootstrap from the machine's own apt
# source and kept as a tarball under $TRAVELLR_DOCKER_CACHE (default /var/cache/travellr-ops/docker).
set -euo pipefail

DIR=${TRAVELLR_DOCKER_DIR:-/var/lib/travellr-testbed/docker}
CACHE=${TRAVELLR_DOCKER_CACHE:-/var/cache/travellr-ops/docker}
SOCK=$DIR/docker.sock
PIDFILE=$DIR/dockerd.pid
LOG=$DIR/dockerd.log
HOST=unix://$SOCK
# Debian's CLI speaks the engine's API (1.41); a newer docker earlier on PATH may not.
DOCKER=/usr/bin/docker
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
LABEL=org.travellr.testbed

log() { printf 'docker.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
dk() { "$DOCKER" -H "$HOST" "$@"; }

install() {
  local pkg missing=()
  for pkg in docker.io docker-compose busybox-static debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed (run apt-get update first?)"
  fi
}

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  [ -x /usr/sbin/dockerd ] || die "dockerd not installed: run '$0 install'"
  if running && dk info >/dev/null 2>&1; then echo "$HOST"; return 0; fi
  if running; then
    wait_info || die "dockerd (pid $(cat "$PIDFILE")) runs but does not answer; log: $LOG"
    echo "$HOST"; return 0
  fi
  mkdir -p "$DIR/data" "$DIR/exec"
  # No bridge and no NAT: a container can never get a private-range address; containers run
  # with network_mode host (listening on 127.0.0.1) or none.
  setsid /usr/sbin/dockerd \
    --host "$HOST" --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
    --bridge=none --iptables=false --ip-masq=false --ip-forward=false --userland-proxy=false \
    >>"$LOG" 2>&1 </dev/null &
  wait_info || { tail -20 "$LOG" >&2; die "dockerd did not answer within 60 s; log: $LOG"; }
  echo "$HOST"
}

wait_info() {
  local i
  for i in $(seq 1 300); do
    dk info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

stop() {
  running || { rm -f "$PIDFILE"; return 0; }
  local pid i
  pid=$(cat "$PIDFILE")
  kill "$pid"
  for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "dockerd $pid still running after 30 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
}

# --- images ------------------------------------------------------------------------------------
MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECANTUS_PIN='SecantusDB==0.7.0b3' # GPL-2.0: test/demo images only
# nodejs: Debian's Node.js (18) runs the stand-in backend (scripts/sandbox/server.js)
BASE_PACKAGES=python3,python3-pymongo,python3-redis,redis-server,nodejs,ca-certificates

base_recipe() { echo "bookworm minbase $BASE_PACKAGES $SECANTUS_PIN v1"; }

# The Debian root file system every image stands on, imported once per recipe.
base_image() {
  local hash tag tarball rootfs
  hash=$(base_recipe | sha256sum | cut -c1-12)
  tag=travellr-testbed-base:$hash
  if dk image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; return 0; fi
  tarball=$CACHE/base-$hash.tar
  if [ ! -s "$tarball" ]; then
    rootfs=$CACHE/rootfs-$hash
    rm -rf "$rootfs"; mkdir -p "$rootfs"
    log "debootstrap bookworm from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" "$MIRROR" \
      >"$CACHE/debootstrap-$hash.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap-$hash.log" >&2; die "debootstrap failed"; }
    # The MongoDB-wire server for the mongodb service, into its own folder (PYTHONPATH).
    log "pip: $SECANTUS_PIN into the image"
    "$VENV/bin/pip" install -q --no-compile --target "$rootfs/opt/secantus" "$SECANTUS_PIN" \
      || die "pip install $SECANTUS_PIN failed"
    rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
    tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tag"
  dk import --change "LABEL $LABEL=true" "$tarball" "$tag" >/dev/null
  echo "$tag"
}

# build TAG DOCKERFILE-TEXT [FILE...]: docker build unless an image with that recipe exists.
build() {
  local tag=$1 dockerfile=$2; shift 2
  local hash ctx
  hash=$( { echo "$dockerfile"; for f in "$@"; do cat "$f"; done; } | sha256sum | cut -c1-16)
  if [ "$(dk image inspect -f "{{index .Config.Labels \"$LABEL.recipe\"}}" "$tag" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  ctx=$(mktemp -d)
  printf '%s\nLABEL %s=true %s.recipe=%s\n' "$dockerfile" "$LABEL" "$LABEL" "$hash" >"$ctx/Dockerfile"
  for f in "$@"; do cp "$f" "$ctx/"; done
  log "building $tag"
  dk build -q --network none -t "$tag" "$ctx" >/dev/null || { rm -rf "$ctx"; die "build of $tag failed"; }
  rm -rf "$ctx"
}

# The backend's app folder as a tarball for ADD: server.js, package*.json and node_modules,
# installed on this machine by `npm ci` from the lock (scripts/sandbox.sh deps, npm's cache):
# the build and the containers need no network. Its dependencies are pure JavaScript.
backend_app() { # OUT-TAR
  bash "$REPO/scripts/sandbox.sh" deps >&2
  tar -C "$REPO/scripts/sandbox" -cf "$1" --exclude=node_modules/.travellr-lock-sha256 \
    server.js package.json package-lock.json node_modules
}

# build_backend TAG DOCKERFILE-TEXT: like build, for the backend's app tarball; the recipe
# hash covers the lock file rather than the installed tree (which npm ci derives from it).
build_backend() {
  local tag=$1 dockerfile=$2 hash ctx app=$REPO/scripts/sandbox
  hash=$( { echo "$dockerfile"; cat "$app/server.js" "$app/package.json" "$app/package-lock.json"; } \
    | sha256sum | cut -c1-16)
  if [ "$(dk image inspect -f "{{index .Config.Labels \"$LABEL.recipe\"}}" "$tag" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  ctx=$(mktemp -d)
  printf '%s\nLABEL %s=true %s.recipe=%s\n' "$dockerfile" "$LABEL" "$LABEL" "$hash" >"$ctx/Dockerfile"
  backend_app "$ctx/app.tar" || { rm -rf "$ctx"; die "the backend's node_modules could not be installed"; }
  log "building $tag"
  dk build -q --network none -t "$tag" "$ctx" >/dev/null || { rm -rf "$ctx"; die "build of $tag failed"; }
  rm -rf "$ctx"
}

images() {
  local base
  base=$(base_image)
  build travellr-redis:testbed "FROM $base
CMD [\"redis-server\", \"--bind\", \"127.0.0.1\", \"--port\", \"6379\", \"--save\", \"\", \"--appendonly\", \"no\"]"
  build travellr-mongodb:testbed "FROM $base
ENV PYTHONPATH=/opt/secantus
ENTRYPOINT [\"python3\", \"-c\", \"import sys; from secantus.cli import main; sys.argv[0] = 'secantusd'; sys.exit(main())\"]
CMD [\"--host\", \"127.0.0.1\", \"--port\", \"27017\", \"--storage-path\", \":memory:\"]"
  local version health
  for version in v1 v2 v2-broken v2-errors; do
    # only the broken tag sets the variable at all: any value may read as "fail"
    health=; [ "$version" = v2-broken ] && health=" BACKEND_HEALTH_FAIL=1"
    [ "$version" = v2-errors ] && health=" BACKEND_ERROR_PCT=20"
    # node is PID 1: SIGTERM (stop) and SIGUSR1 (its inspector: service profile) reach it
    build_backend "travellr-backend:$version" "FROM $base
ADD app.tar /app/
ENV BACKEND_VERSION=$version HOST=127.0.0.1 PORT=5000 NODE_ENV=production$health
WORKDIR /app
CMD [\"node\", \"/app/server.js\"]"
  done
  # images of older recipes, untagged by the builds above
  dk image prune -f --filter "label=$LABEL=true" >/dev/null
}

# travellr-ops' own base: the testbed's root file system without SecantusDB (GPL-2.0, a test
# dependency that must not ship) and without redis-server's data.
ops_base_image() {
  local hash tag tarball
  base_image >/dev/null
  hash=$(base_recipe | sha256sum | cut -c1-12)
  tag=travellr-ops-base:$hash
  if dk image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; return 0; fi
  tarball=$CACHE/base-$hash.tar
  cp "$tarball" "$CACHE/ops-base-$hash.tar.part"
  tar --delete -f "$CACHE/ops-base-$hash.tar.part" ./opt/secantus
  log "importing $tag"
  dk import --change "LABEL $LABEL=true" "$CACHE/ops-base-$hash.tar.part" "$tag" >/dev/null
  rm -f "$CACHE/ops-base-$hash.tar.part"
  echo "$tag"
}

ops_image() {
  local base version hash tag ctx
  base=$(ops_base_image)
  version=$("$VENV/bin/python" -c 'import travellr_ops; print(travellr_ops.__version__)')
  tag=travellr-ops:$version
  hash=$( { echo "$base"; cat "$REPO/config/docker/Dockerfile" "$REPO/pyproject.toml";
            cd "$REPO" && git ls-files -co --exclude-standard src | LC_ALL=C sort | xargs cat; } \
          | sha256sum | cut -c1-16)
  if [ "$(dk image inspect -f "{{index .Config.Labels \"$LABEL.recipe\"}}" "$tag" 2>/dev/null)" = "$hash" ]; then
    echo "$tag"; return 0
  fi
  ctx=$(mktemp -d)
  log "pip wheel: travellr-ops $version and its dependencies"
  "$VENV/bin/pip" wheel -q --no-cache-dir -w "$ctx/wheels" "$REPO" >"$ctx/pip.log" 2>&1 \
    || { tail -20 "$ctx/pip.log" >&2; rm -rf "$ctx"; die "pip wheel failed"; }
  # pip's own wheel runs the install; async-timeout is what redis needs on Python < 3.11.3
  # (bookworm's 3.11.2), a marker the host's newer Python skips in `pip wheel`
  "$VENV/bin/pip" download -q --no-deps -d "$ctx/wheels" pip 'async-timeout>=4.0.3' \
    >"$ctx/pip.log" 2>&1 || { tail -20 "$ctx/pip.log" >&2; rm -rf "$ctx"; die "pip download failed"; }
  rm -f "$ctx/pip.log"
  log "building $tag"
  dk build -q --network none --build-arg BASE="$base" --label "$LABEL=true" \
    --label "$LABEL.recipe=$hash" -f "$REPO/config/docker/Dockerfile" -t "$tag" \
    -t travellr-ops:latest "$ctx" >/dev/null || { rm -rf "$ctx"; die "build of $tag failed"; }
  rm -rf "$ctx"
  echo "$tag"
}

# --- the compose stack -----------------------------------------------------------------------
stack_up() {
  local project=${1:-travellr} i
  DOCKER_HOST=$HOST docker-compose -p "$project" -f "$REPO/config/docker-compose.yml" up -d >&2 \
    || die "docker-compose up failed"
  for i in $(seq 1 240); do
    if [ "$(dk ps --filter "label=com.docker.compose.project=$project" --filter health=healthy -q | wc -l)" -ge 3 ]; then
      return 0
    fi
    sleep 0.5
  done
  dk ps -a --filter "label=com.docker.compose.project=$project" >&2
  die "the stack $project was not healthy within 120 s"
}

stack_down() {
  local project=${1:-travellr}
  DOCKER_HOST=$HOST docker-compose -p "$project" -f "$REPO/config/docker-compose.yml" down --volumes --remove-orphans >&2
}

case ${1:-} in
  stack-up) running || die "the engine is not running: '$0 start' first"; stack_up "${2:-}" ;;
  stack-down) running || exit 0; stack_down "${2:-}" ;;
  install) install ;;
  start) start ;;
  stop) stop ;;
  host) echo "$HOST" ;;
  status) running ;;
  images) running || die "the engine is not running: '$0 start' first"; images ;;
  ops-image) running || die "the engine is not running: '$0 start' first"; ops_image ;;
  *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
