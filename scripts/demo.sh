#!/usr/bin/env bash
# The demo: start the sandbox platform on 127.0.0.1 and run the runbook's main jobs against it.
# Commands that report problems on purpose (the seed plants a missing index) do not stop it.
set -uo pipefail
cd "$(dirname "$0")/.."
ops=.venv/bin/travellr-ops

step() { printf '\n\033[1m$ travellr-ops %s\033[0m\n' "$*"; "$ops" "$@"; echo "(exit $?)"; }

bash scripts/sandbox.sh up || exit 1
has() { "$ops" "$1" --help 2>/dev/null | grep -qE "^\s*│? *$2 "; }

step health
step config show
if has cache stats; then step cache stats; fi
if has maintenance status; then step maintenance status; fi
if has db ping; then step db ping; step db indexes analyze; fi
if has backup create; then step backup create; step backup list; fi
printf '\nThe sandbox is still running: bash scripts/sandbox.sh status | down\n'
