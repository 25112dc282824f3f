#!/bin/sh
# build.sh OUTPUT [WEAVE_GIT]: build the Go mesh peer offline from the sources
# weave 2.8.1 vendors (mesh, x/crypto, x/sys/cpu) into the binary OUTPUT.
set -eu
out=$1
weave_git=${2:-/work/.mirror/weaveworks+weave/repo}
here=$(cd "$(dirname "$0")" && pwd)
PATH=/work/kapi/gowheel/go/bin:$PATH
export PATH GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git --git-dir="$weave_git" archive HEAD vendor/github.com/weaveworks/mesh \
    vendor/golang.org/x/crypto vendor/golang.org/x/sys/cpu | tar -x -C "$work"
cp "$here/main.go" "$work/"
cat > "$work/go.mod" <<'MOD'
module meshpeer

go 1.14

require (
	github.com/weaveworks/mesh v0.0.0-20191105120815-58dbcc3e8e63
	golang.org/x/crypto v0.0.0-20200220183623-bac4c82f6975
	golang.org/x/sys v0.0.0-20200615200032-f1bc736245b1
)
MOD
cat > "$work/vendor/modules.txt" <<'MOD'
# github.com/weaveworks/mesh v0.0.0-20191105120815-58dbcc3e8e63
## explicit
github.com/weaveworks/mesh
# golang.org/x/crypto v0.0.0-20200220183623-bac4c82f6975
## explicit
golang.org/x/crypto/blake2b
golang.org/x/crypto/curve25519
golang.org/x/crypto/internal/subtle
golang.org/x/crypto/nacl/box
golang.org/x/crypto/nacl/secretbox
golang.org/x/crypto/poly1305
golang.org/x/crypto/salsa20/salsa
# golang.org/x/sys v0.0.0-20200615200032-f1bc736245b1
## explicit
golang.org/x/sys/cpu
MOD
cd "$work"
GOCACHE="$work/cache" go build -o "$out" .
