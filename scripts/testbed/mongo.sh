#!/usr/bin/env bash
# SecantusDB (MongoDB wire protocol) on 127.0.0.1 for tests and the sandbox
# (see ../shared/TESTBED.md).
#
#   mongo.sh install          pip install SecantusDB into $VENV (default: this repo's .venv)
#   mongo.sh start --port P --dir D [--standalone] [--memory] [--extra "ARGS"]
#                             replica set (setName secantus) unless --standalone;
#                             data in D/data, or in memory with --memory
#   mongo.sh stop --dir D [--kill]
#                             SIGTERM and wait (the server takes 2-4 s to close its store;
#                             SIGKILL after ~10 s); --kill: SIGKILL at once, for a server whose
#                             data is thrown away (in memory, or a test's scratch folder): its
#                             journal makes even that durable, but nobody waits for a checkpoint
#
# Pidfile and log live in D. Prints nothing but errors; exits non-zero on failure.
set -euo pipefail

die() { echo "mongo.sh: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${VENV:-$repo/.venv}
server="$venv/bin/secantusd-py"
python="$venv/bin/python"
pin='SecantusDB==0.7.0b3'

install() {
  [ -x "$server" ] && return 0
  [ -x "$venv/bin/pip" ] || die "no venv at $venv (set VENV)"
  "$venv/bin/pip" install -q "$pin" >/dev/null || die "pip install $pin failed"
}

port_busy() { # port: true when something accepts connections on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_ready() { # port pid log extra: one process polls ping, so start-up is not paid per attempt
  "$python" - "$@" <<'PY'
import os, sys, time
from pymongo import MongoClient
port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# a server with a certificate (any, even self-signed) only speaks TLS
tls = {"tls": True, "tlsAllowInvalidCertificates": True} if "--tls-cert-file" in sys.argv[4] else {}
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"mongo.sh: server exited at start; log: {log}")
    c = MongoClient("127.0.0.1", port, directConnection=True,
                    serverSelectionTimeoutMS=200, connectTimeoutMS=200, **tls)
    try:
        c.admin.command("ping")
        sys.exit(0)
    except Exception:
        time.sleep(0.05)
    finally:
        c.close()
sys.exit(f"mongo.sh: no ping answer on port {port} within 30 s; log: {log}")
PY
}

alive() { # pid: true while the process runs. A killed child of ours is re-parented to PID 1,
  # which may reap it only seconds later: a zombie ("Z" in /proc/PID/stat) has stopped already.
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_dir() { # dir [KILL|TERM]
  local pidfile="$1/mongo.pid" sig=${2:-TERM} pid i
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
}

cmd=${1:-}; [ -n "$cmd" ] && shift
port="" dir="" standalone="" memory="" extra="" sig=TERM
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --standalone) standalone=1; shift ;;
    --memory) memory=1; shift ;;
    --extra) extra=$2; shift 2 ;;
    --kill) sig=KILL; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done

case $cmd in
  install) install ;;
  start)
    [ -n "$port" ] && [ -n "$dir" ] || die "usage: mongo.sh start --port P --dir D [--standalone] [--memory] [--extra ARGS]"
    [ -x "$server" ] || die "$server missing: run mongo.sh install"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    pidfile="$dir/mongo.pid" log="$dir/mongo.log"
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      die "already running (pid $(cat "$pidfile"), $pidfile)"
    fi
    if port_busy "$port"; then die "port $port is already in use"; fi
    storage="$dir/data"; [ -n "$memory" ] && storage=":memory:"
    args=(--host 127.0.0.1 --port "$port" --storage-path "$storage"
          --oplog-max-entries 1000000 --oplog-retention-seconds 86400 --cache-size 256M)
    [ -n "$standalone" ] && args+=(--standalone)
    # shellcheck disable=SC2206 # --extra is a word list by design
    [ -n "$extra" ] && args+=($extra)
    # Run from D so the server's secantusd.toml auto-discovery finds nothing unexpected.
    (cd "$dir" && exec setsid "$server" "${args[@]}" </dev/null >>"$log" 2>&1) &
    pid=$!
    echo "$pid" >"$pidfile"
    wait_ready "$port" "$pid" "$log" "$extra" || { stop_dir "$dir"; exit 1; } ;;
  stop)
    [ -n "$dir" ] || die "usage: mongo.sh stop --dir D [--kill]"
    stop_dir "$dir" "$sig" ;;
  *) die "usage: mongo.sh install | start --port P --dir D [--standalone] [--memory] [--extra ARGS] | stop --dir D [--kill]" ;;
esac
