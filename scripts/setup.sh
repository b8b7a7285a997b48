#!/usr/bin/env bash
# Install everything travellr-ops, its tests and its sandbox need on a fresh Debian 12 machine
# (run as root): Debian packages, the Python virtual environment with the package and its dev
# extra, and the testbed servers (redis-server, SecantusDB, Docker Engine, a Kubernetes control
# plane built from Debian's source, cached outside the checkout). Safe to run again: every
# step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '==> %s\n' "$*" >&2; }

APT_PACKAGES=(redis-server docker.io docker-compose busybox-static debootstrap openssl make)
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

for part in redis mongo docker k8s; do
  if [ -x "scripts/testbed/$part.sh" ] || [ -f "scripts/testbed/$part.sh" ]; then
    log "testbed: $part"
    VENV="$ROOT/.venv" bash "scripts/testbed/$part.sh" install
  fi
done
log "setup done"
