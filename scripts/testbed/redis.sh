#!/usr/bin/env bash
# Real redis-server on 127.0.0.1 for tests and the sandbox (see ../shared/TESTBED.md).
#
#   redis.sh install
#   redis.sh start --port P --dir D          one daemonized server, nothing persisted
#   redis.sh stop --dir D
#   redis.sh cluster-start --ports P1,P2,P3 --dir D   three primaries, cluster created
#                            (each P <= 55535 with P+10000 free: the cluster bus port)
#   redis.sh cluster-stop --dir D
#
# Pidfiles and logs live in D. Prints nothing but errors; exits non-zero on failure.
set -euo pipefail

die() { echo "redis.sh: $*" >&2; exit 1; }

install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then return 0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null \
    || die "apt-get install redis-server failed (run apt-get update first?)"
}

wait_ping() { # port pidfile log
  local port=$1 pidfile=$2 log=$3 i
  for i in $(seq 1 200); do
    # The answer must come from our own process: another server may hold the port.
    if [ -s "$pidfile" ] && [ "$(redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null \
        | tr -d '\r' | sed -n 's/^process_id://p')" = "$(cat "$pidfile")" ]; then return 0; fi
    if [ -s "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
    sleep 0.05
  done
  die "redis on port $port did not come up (dead, or no answer within 10 s); log: $log"
}

# start_one PORT DIR NAME [extra redis-server args...]
start_one() {
  local port=$1 dir=$2 name=$3; shift 3
  local pidfile="$dir/$name.pid" log="$dir/$name.log"
  mkdir -p "$dir"
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "already running (pid $(cat "$pidfile"), $pidfile)"
  fi
  rm -f "$pidfile"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "$log" --dir "$dir" "$@" >/dev/null \
    || die "redis-server failed to start on port $port; log: $log"
  wait_ping "$port" "$pidfile" "$log"
}

alive() { # pid: true while the process runs. A killed child of ours is re-parented to PID 1,
  # which may reap it only seconds later: a zombie ("Z" in /proc/PID/stat) has stopped already.
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_pidfile() { # pidfile
  local pidfile=$1 pid i
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

cmd=${1:-}; [ -n "$cmd" ] && shift
port="" ports="" dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --ports) ports=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

case $cmd in
  install) install ;;
  start)
    [ -n "$port" ] && [ -n "$dir" ] || die "usage: redis.sh start --port P --dir D"
    start_one "$port" "$dir" redis ;;
  stop)
    [ -n "$dir" ] || die "usage: redis.sh stop --dir D"
    stop_pidfile "$dir/redis.pid" ;;
  cluster-start)
    [ -n "$ports" ] && [ -n "$dir" ] || die "usage: redis.sh cluster-start --ports P1,P2,P3 --dir D"
    IFS=, read -r -a plist <<<"$ports"
    [ "${#plist[@]}" -ge 3 ] || die "a cluster needs at least 3 ports"
    nodes=()
    for p in "${plist[@]}"; do
      mkdir -p "$dir/node-$p"
      rm -f "$dir/node-$p/nodes.conf"
      start_one "$p" "$dir/node-$p" redis --cluster-enabled yes \
        --cluster-config-file "$dir/node-$p/nodes.conf" --cluster-node-timeout 5000
      nodes+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
      >"$dir/cluster-create.log" 2>&1 || die "cluster create failed; see $dir/cluster-create.log"
    for i in $(seq 1 300); do
      ok=1
      for p in "${plist[@]}"; do
        redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
      done
      [ $ok = 1 ] && exit 0
      sleep 0.05
    done
    die "cluster did not reach cluster_state:ok within 15 s" ;;
  cluster-stop)
    [ -n "$dir" ] || die "usage: redis.sh cluster-stop --dir D"
    for pf in "$dir"/node-*/redis.pid; do [ -e "$pf" ] && stop_pidfile "$pf"; done
    exit 0 ;;
  *) die "usage: redis.sh install | start --port P --dir D | stop --dir D | cluster-start --ports P1,P2,P3 --dir D | cluster-stop --dir D" ;;
esac
