#!/usr/bin/env bash
# The runbook's ./scripts/health-check.sh, kept working: a thin wrapper of `travellr-ops health`.
# Exit codes are travellr-ops's: 0 healthy, 1 unhealthy, 3 a server did not answer.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -x "$here/.venv/bin/travellr-ops" ]; then
  exec "$here/.venv/bin/travellr-ops" health "$@"
fi
exec travellr-ops health "$@"
