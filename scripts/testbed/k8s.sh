#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for travellr-ops' tests, demo and benchmarks.
#
#   k8s.sh install                 fetch etcd + kubectl 1.20 and build kube-apiserver and
#                                  kube-controller-manager 1.20 from Debian's source (cached)
#   k8s.sh bin-dir                 print the folder holding the cached binaries
#   k8s.sh start --dir D [--port P]  etcd + apiserver + controller-manager; writes D/kubeconfig
#   k8s.sh stop --dir D            stop what start started (by the PIDs in D)
#
# Nothing here touches the system's apt configuration or /usr/bin: packages are fetched into a
# private apt state and unpacked into a private root. Binaries live in
# $TRAVELLR_K8S_CACHE (default /var/cache/travellr-ops/k8s)/<recipe hash>/bin, so a change to
# the recipe below builds afresh while an unchanged recipe never rebuilds.
set -euo pipefail

CACHE_ROOT=${TRAVELLR_K8S_CACHE:-/var/cache/travellr-ops/k8s}
WORK_ROOT=${TRAVELLR_K8S_WORK:-/var/tmp/travellr-ops-k8s-build}
CONTEXT_NAME=${TRAVELLR_K8S_CONTEXT:-travellr-testbed}

log() { printf 'k8s.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- the recipe: everything that decides what the binaries are --------------------------------
# Its text (these functions, via `declare -f`) is hashed into the cache key.
recipe_packages() {
    echo golang-1.19-go golang-1.19-src rsync libpopt0 etcd-server kubernetes-client \
        golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
}

recipe_fetch() { # $1 = work dir
    local work=$1 apt_dir=$1/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$work/debs" "$work/root" "$work/src"
    # deb-src copy of the machine's own sources; the system's apt state stays untouched.
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$apt_dir/sources.sources"
    local -a O=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/parts"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::State::status=/var/lib/dpkg/status" -o "Debug::NoLocking=1")
    mkdir -p "$apt_dir/parts"
    cp "$apt_dir/sources.sources" "$apt_dir/parts/debian-src.sources"
    apt-get "${O[@]}" -qq update
    (cd "$work/src" && apt-get "${O[@]}" -qq source --download-only kubernetes)
    (cd "$work/debs" && apt-get -qq download $(recipe_packages))
    local deb
    for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
    (cd "$work/src" && dpkg-source --no-check -x ./*.dsc tree >/dev/null)
}

recipe_vendor_fix() { # $1 = work dir
    # The tree's vendored reflect2 crashes (SIGSEGV) Go 1.19 builds on the first custom-object
    # create: use Debian's reflect2 1.0.2 and json-iterator 1.1.12 instead.
    local work=$1 tree=$1/src/tree gocode=$1/root/usr/share/gocode/src/github.com
    local pkg
    for pkg in modern-go/reflect2 json-iterator/go; do
        rm -rf "$tree/vendor/github.com/$pkg"
        cp -rL "$gocode/$pkg" "$tree/vendor/github.com/$pkg"
        find "$tree/vendor/github.com/$pkg" -name '*_test.go' -delete
        find "$tree/vendor/github.com/$pkg" -mindepth 1 -maxdepth 1 -type d \
            \( -name 'test*' -o -name 'benchmarks' -o -name 'skip_tests' \) -exec rm -rf {} +
    done
}

recipe_build() { # $1 = work dir, $2 = destination bin dir
    local work=$1 dest=$2 gopath=$1/gopath
    mkdir -p "$gopath/src/k8s.io"
    ln -sfn "$work/src/tree" "$gopath/src/k8s.io/kubernetes"
    (
        cd "$gopath/src/k8s.io/kubernetes"
        export GOPATH=$gopath GOROOT=$work/root/usr/lib/go-1.19 CGO_ENABLED=0 GO111MODULE=off
        export GOCACHE=$work/gocache GOFLAGS=-mod=vendor
        export PATH=$GOROOT/bin:$work/root/usr/bin:$PATH
        export LD_LIBRARY_PATH=$work/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/make.log" 2>&1 \
            || { tail -40 "$work/make.log" >&2; exit 1; }
    )
    local out=$gopath/src/k8s.io/kubernetes/_output/local/bin/linux/amd64
    mkdir -p "$dest"
    install -m 0755 "$out/kube-apiserver" "$out/kube-controller-manager" "$dest/"
    install -m 0755 "$work/root/usr/bin/etcd" "$work/root/usr/bin/kubectl" "$dest/"
}

recipe_hash() {
    declare -f recipe_packages recipe_fetch recipe_vendor_fix recipe_build | sha256sum | cut -c1-16
}

bin_dir() { echo "$CACHE_ROOT/$(recipe_hash)/bin"; }

have_binaries() {
    local b
    for b in kube-apiserver kube-controller-manager etcd kubectl; do
        [[ -x "$(bin_dir)/$b" ]] || return 1
    done
}

cmd_install() {
    if have_binaries; then
        log "binaries cached in $(bin_dir)"
        return 0
    fi
    command -v make >/dev/null || apt-get install -y -qq make >/dev/null
    command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev >/dev/null
    command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null
    local work=$WORK_ROOT.$(recipe_hash) dest tmp
    dest=$(bin_dir)
    tmp=$dest.partial.$$
    rm -rf "$work"
    mkdir -p "$work"
    log "fetching sources and packages into $work"
    recipe_fetch "$work"
    recipe_vendor_fix "$work"
    log "building kube-apiserver and kube-controller-manager (about 4 minutes on 2 cores)"
    recipe_build "$work" "$tmp"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    rm -rf "$work"
    log "binaries cached in $dest"
}

# --- running a control plane -------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # $1 = seconds, rest = command
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_start() {
    local dir="" port=""
    while (($#)); do
        case $1 in
            --dir) dir=$2; shift 2 ;;
            --port) port=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ -n $dir ]] || die "start needs --dir"
    have_binaries || die "binaries missing in $(bin_dir): run '$0 install'"
    local bin
    bin=$(bin_dir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -n $port ]] || port=$(free_port)
    local etcd_client etcd_peer
    etcd_client=$(free_port)
    etcd_peer=$(free_port)

    # Credentials: the apiserver makes its own serving cert (self-signed, for 127.0.0.1) in the
    # cert dir; the service-account key signs tokens; static tokens give an admin, a user with
    # no rights (for RBAC 403s) and the controller manager (a master: without
    # --use-service-account-credentials its own role cannot create ReplicaSets or pods).
    [[ -f $dir/sa.key ]] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    if [[ ! -f $dir/tokens.csv ]]; then
        local admin viewer cm
        admin=$(openssl rand -hex 16); viewer=$(openssl rand -hex 16); cm=$(openssl rand -hex 16)
        {
            echo "$admin,admin,admin-uid,system:masters"
            echo "$viewer,limited,limited-uid,travellr:limited"
            echo "$cm,system:kube-controller-manager,kcm-uid,system:masters"
        } > "$dir/tokens.csv"
        chmod 600 "$dir/tokens.csv"
    fi
    local admin_token viewer_token cm_token
    admin_token=$(awk -F, '$2=="admin"{print $1}' "$dir/tokens.csv")
    viewer_token=$(awk -F, '$2=="limited"{print $1}' "$dir/tokens.csv")
    cm_token=$(awk -F, '$2=="system:kube-controller-manager"{print $1}' "$dir/tokens.csv")

    # The simulated kubelet (k8s_node_sim.py) serves pod logs with kubelet.crt, signed by
    # kubelet-ca.crt, so the apiserver verifies the node it proxies logs from.
    if [[ ! -f $dir/kubelet.crt ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=testbed-kubelet-ca \
            -keyout "$dir/kubelet-ca.key" -out "$dir/kubelet-ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
            -keyout "$dir/kubelet.key" -out "$dir/kubelet.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\n' > "$dir/kubelet.ext"
        openssl x509 -req -in "$dir/kubelet.csr" -CA "$dir/kubelet-ca.crt" -CAkey "$dir/kubelet-ca.key" \
            -CAcreateserial -days 30 -extfile "$dir/kubelet.ext" -out "$dir/kubelet.crt" 2>/dev/null
    fi

    log "etcd on 127.0.0.1:$etcd_client"
    setsid "$bin/etcd" --name travellr-testbed --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_client" \
        --advertise-client-urls "http://127.0.0.1:$etcd_client" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "travellr-testbed=http://127.0.0.1:$etcd_peer" \
        --unsafe-no-fsync >"$dir/etcd.log" 2>&1 </dev/null &
    echo $! > "$dir/etcd.pid"
    wait_for 30 curl -sf "http://127.0.0.1:$etcd_client/health" || { tail "$dir/etcd.log" >&2; die "etcd did not start"; }

    log "kube-apiserver on https://127.0.0.1:$port"
    mkdir -p "$dir/certs"
    setsid "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_client" \
        --bind-address=127.0.0.1 --secure-port="$port" --advertise-address=127.0.0.1 \
        --cert-dir="$dir/certs" --token-auth-file="$dir/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$dir/sa.key" \
        --service-account-signing-key-file="$dir/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 --insecure-port=0 \
        --disable-admission-plugins=ServiceAccount \
        --enable-priority-and-fairness=false --endpoint-reconciler-type=none \
        --kubelet-preferred-address-types=InternalIP \
        --kubelet-certificate-authority="$dir/kubelet-ca.crt" \
        >"$dir/apiserver.log" 2>&1 </dev/null &
    echo $! > "$dir/apiserver.pid"

    local server=https://127.0.0.1:$port
    wait_for 60 curl -sf --cacert "$dir/certs/apiserver.crt" -H "Authorization: Bearer $admin_token" "$server/readyz" \
        || { tail -20 "$dir/apiserver.log" >&2; cmd_stop --dir "$dir"; die "kube-apiserver did not become ready"; }

    write_kubeconfig "$dir/kubeconfig" "$server" "$dir/certs/apiserver.crt" \
        "$CONTEXT_NAME" admin "$admin_token" "$CONTEXT_NAME-limited" limited "$viewer_token"
    write_kubeconfig "$dir/controller-manager.kubeconfig" "$server" "$dir/certs/apiserver.crt" \
        kcm system:kube-controller-manager "$cm_token"

    log "kube-controller-manager"
    setsid "$bin/kube-controller-manager" --kubeconfig="$dir/controller-manager.kubeconfig" \
        --leader-elect=false --port=0 --secure-port=0 \
        --controllers=deployment,replicaset,garbagecollector,namespace \
        --service-account-private-key-file="$dir/sa.key" \
        >"$dir/controller-manager.log" 2>&1 </dev/null &
    echo $! > "$dir/controller-manager.pid"
    sleep 0.5
    alive "$dir/controller-manager.pid" || { tail -20 "$dir/controller-manager.log" >&2; cmd_stop --dir "$dir"; die "kube-controller-manager exited"; }

    echo "$port" > "$dir/port"
    log "ready: KUBECONFIG=$dir/kubeconfig (context $CONTEXT_NAME)"
}

write_kubeconfig() { # file server ca (context user token)...
    local file=$1 server=$2 ca=$3; shift 3
    local ca_data
    ca_data=$(base64 -w0 "$ca")
    {
        echo "apiVersion: v1"
        echo "kind: Config"
        echo "clusters:"
        echo "- name: testbed"
        echo "  cluster:"
        echo "    server: $server"
        echo "    certificate-authority-data: $ca_data"
        echo "contexts:"
        local args=("$@") i
        for ((i = 0; i < ${#args[@]}; i += 3)); do
            echo "- name: ${args[i]}"
            echo "  context: {cluster: testbed, user: ${args[i+1]}, namespace: default}"
        done
        echo "current-context: ${args[0]}"
        echo "users:"
        for ((i = 0; i < ${#args[@]}; i += 3)); do
            echo "- name: ${args[i+1]}"
            echo "  user: {token: ${args[i+2]}}"
        done
    } > "$file"
    chmod 600 "$file"
}

cmd_stop() {
    local dir=""
    while (($#)); do
        case $1 in
            --dir) dir=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ -n $dir ]] || die "stop needs --dir"
    local name pid
    for name in controller-manager apiserver etcd; do
        [[ -f $dir/$name.pid ]] || continue
        pid=$(cat "$dir/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            local i
            for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

case ${1:-} in
    install) shift; cmd_install "$@" ;;
    bin-dir) bin_dir ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) echo "usage: $0 install | bin-dir | start --dir D [--port P] | stop --dir D" >&2; exit 2 ;;
esac
