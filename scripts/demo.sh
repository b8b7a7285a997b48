#!/usr/bin/env bash
# The demo: start the sandbox platform on 127.0.0.1 and run the runbook's main jobs against it.
# Some steps report problems on purpose (the seed plants a missing index; the cache starts
# cold): their non-zero exit is shown, and the demo goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
ops=.venv/bin/travellr-ops

# Bold and dim only on a terminal (or with FORCE_COLOR), never with NO_COLOR: a log of the
# demo holds no raw escape codes.
if { [ -t 1 ] || [ -n "${FORCE_COLOR:-}" ]; } && [ -z "${NO_COLOR:-}" ]; then
  bold=$'\033[1m' dim=$'\033[2m' plain=$'\033[0m'
else
  bold='' dim='' plain=''
fi
step() { printf '\n%s$ travellr-ops %s%s\n' "$bold" "$*" "$plain"; "$ops" "$@"; echo "(exit $?)"; }
note() { printf '\n%s# %s%s\n' "$dim" "$*" "$plain"; }

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
note "The key metrics once against their thresholds (the seeded missing index makes the query time breach)"
step monitor once
note "Weekly security: the dependency audit (offline advisories) and the log review"
step security audit
step security logs --since 24h
note "Backups: the nightly job, then what is there and whether it is sound"
step --quiet backup create
step backup list
step backup verify
note "The morning checklist as cron runs it, and when each routine last ran"
step checklist morning --quiet
step checklist last
printf '\nThe sandbox is still running: bash scripts/sandbox.sh status | down\n'
