#!/usr/bin/env bash
# The demo: start the sandbox platform on 127.0.0.1 and run the runbook's main jobs against it.
# Some steps report problems on purpose (the seed plants a missing index; the cache starts
# cold): their non-zero exit is shown, and the demo goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
ops=.venv/bin/travellr-ops

step() { printf '\n\033[1m$ travellr-ops %s\033[0m\n' "$*"; "$ops" "$@"; echo "(exit $?)"; }
note() { printf '\n\033[2m# %s\033[0m\n' "$*"; }

bash scripts/sandbox.sh up || exit 1

note "Morning checklist: is everything up?"
step health
step config validate
note "Database: connection, then the index the app's bookings query lacks, fixed, checked again"
step db ping
step db indexes analyze
step db indexes ensure --yes
step db indexes analyze
note "Cache: warm it from the configured endpoints, then its stats"
step cache warm
step cache stats --window 1
step cache keys 'search:*'
step cache clear 'search:*' --dry-run
note "Maintenance mode: the backend answers 503, health says so instead of alarming"
step maintenance on --message "demo: database maintenance" --yes
step health
step maintenance off --yes
note "Backups: the nightly job, then what is there and whether it is sound"
step --quiet backup create
step backup list
step backup verify
printf '\nThe sandbox is still running: bash scripts/sandbox.sh status | down\n'
