#!/usr/bin/env bash
# The demo: start the sandbox platform on 127.0.0.1 and run the runbook's main jobs against it.
# Some steps report problems on purpose (the seed plants a missing index; the cache starts
# cold): their non-zero exit is shown, and the demo goes on. After the README's steps (backup
# made and verified, cache warmed and read) the sandbox is green: `monitor once` shows no breach
# and `checklist morning` exits 0. Then one fault is planted (the sandbox's Redis stopped), the
# red result shown with its cause, and Redis started again.
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
# what users do: read the pages cache warm put in Redis (each one a cache hit), a few times
read_cache() {
  printf '\n%s$ (users) GET each page cache warm requested, 8 times%s\n' "$bold" "$plain"
  .venv/bin/python -c '
import urllib.request
from travellr_ops.settings import load_settings
settings = load_settings().settings  # ./travellr-ops.toml, as every step reads it
api = settings.api.url.rstrip("/")
statuses = {}
for _ in range(8):
    for path in settings.cache.warm_paths:
        with urllib.request.urlopen(api + path, timeout=10) as response:
            statuses[response.status] = statuses.get(response.status, 0) + 1
print(", ".join(f"{n} x HTTP {code}" for code, n in sorted(statuses.items())))
'
}

bash scripts/sandbox.sh up || exit 1
SB=.sandbox

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
note "Weekly security: the dependency audit (offline advisories) and the log review"
step security audit
step security logs --since 24h
note "Backups: the nightly job, then what is there and whether it is sound"
step --quiet backup create
step backup list
step backup verify
note "Users come back: the cache warmed again and read (search pages, popular trips)"
step --quiet cache warm
read_cache
note "The key metrics once: a healthy sandbox is green (a rate over too few events says so)"
step monitor once
note "The morning checklist as cron runs it: exit 0 on a healthy sandbox"
step checklist morning --quiet
step checklist last
note "A fault: the sandbox's Redis stops. The monitor and the checklist name it"
bash scripts/testbed/redis.sh stop --dir "$SB/redis" >/dev/null 2>&1
step health
step monitor once
step checklist morning --quiet
note "Repaired: Redis started again, green again"
bash scripts/sandbox.sh up >/dev/null 2>&1 || exit 1
step health
printf '\nThe sandbox is still running: bash scripts/sandbox.sh status | down\n'
