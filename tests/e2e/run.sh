#!/usr/bin/env bash
# End-to-end test of paperclipd against the REAL Paperclip server
# (paperclipai, Node 24, embedded PostgreSQL), as an unprivileged user.
#
#   sudo tests/e2e/run.sh            # from the repository root, as root
#
# Installs (or reuses) Paperclip with tests/e2e/setup-paperclip.sh, copies the
# paperclipd binary ($PAPERCLIPD, else target/release/paperclipd, else
# target/debug/paperclipd) where the test user can run it, then runs:
#   s1-ready          foreground run: READY=1 only after /api/health says "ok";
#                     the server's own READY=1 reached paperclipd's notify
#                     socket and its "Listening on" status the manager's STATUS=
#   s2-sigterm        SIGTERM: exit 0, Paperclip's own ordered stop, nothing left
#   s3-server-killed  SIGKILL of node: exit 137, orphaned postgres removed, restart works
#   s4-port-taken     a stranger on the port: exit 75, no server started
#   s5-user-manager   install --now / status / stop / uninstall under a real
#                     non-root `systemd --user` (tests/support/with-user-manager);
#                     the server is the Node 24 the user's PATH finds; a too old
#                     node: 78 at install and at start, no restart loop
#   s10-stale-pid     a PostgreSQL left on the data dir: exit 75 naming it; after
#                     a SIGKILL of everything, postmaster.pid naming a live
#                     unrelated pid: moved aside, ready (upstream #6597/#2333)
#   s6-first-run-yes  a real terminal (tmux) on a fresh home: onboarding, Quickstart,
#                     "Start Paperclip now?" Yes: READY=1, status ready, Ctrl-Z/fg,
#                     Ctrl-C: exit 0 with no process of the user left
#   s7-first-run-no   the same with No (and `stty tostop`): `paperclipai run` starts
#   s8-first-run-cancel  Ctrl-C at the first question: exit 0, nothing written or running
#   s9-hup-quit       SIGHUP, then SIGQUIT, to paperclipd: the server stops on SIGTERM, exit 0
#   s11-watchdog      under the same kind of manager, a watchdog timeout
#                     (WatchdogSec=6s, node frozen) stops Paperclip with
#                     SIGTERM, PostgreSQL stops in order, no SIGKILL, restart
#   s12-hot-restart   `paperclipd reload` of the real server: RELOADING=1, a new
#                     server, READY=1 again, and the server's own
#                     hot-restart-report.json for our intent (no agent run:
#                     one needs an agent with credentials or a company set up
#                     through the board API, see the README)
# Paperclip runs from the real npm layout (`npm install -g --prefix`: the
# paperclipai symlink with `#!/usr/bin/env node`, no wrapper), Node 24 in a
# directory of its own first on PATH, the machine's older /usr/bin/node present.
# Prints `PASS name` / `FAIL name: why` per scenario, then `N passed, M failed`;
# exits 1 if any failed. Every wait has a deadline; nothing sleeps "long enough".
#
# Environment: PAPERCLIPD (binary to test), E2E_ONLY="s1 s3" (run a subset),
# E2E_KEEP=1 (keep the work dir even when everything passed).
set -euo pipefail

SELF=$(readlink -f "$0")
[ -z "${PAPERCLIPD:-}" ] || PAPERCLIPD=$(readlink -f "$PAPERCLIPD")
cd "$(dirname "$SELF")/../.."
ROOT=$PWD
E2E=$ROOT/tests/e2e
T_START=$SECONDS

log()  { printf '%s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf 'e2e: error: %s\n' "$*" >&2; exit 2; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }

[ "$(id -u)" -eq 0 ] || die "must run as root (creates a user, starts a systemd user manager)"

# One user of pcuser, its data dir and port 3100 at a time: hold the lock that
# scripts/bench (its part 4) also takes, for the whole run. `flock -o`: the
# processes under test do not inherit the locked descriptor.
LOCK=${PAPERCLIPD_E2E_CACHE:-/var/cache/paperclipd-e2e}/.bench-lock
if [ -z "${PAPERCLIPD_E2E_LOCKED:-}" ]; then
    mkdir -p "$(dirname "$LOCK")"
    flock -n "$LOCK" true || log "e2e: waiting for $LOCK (held by another e2e run or scripts/bench)..."
    PAPERCLIPD_E2E_LOCKED=1 exec flock -o -w "${E2E_LOCK_WAIT:-900}" -E 2 "$LOCK" "$SELF" "$@"
fi
unset PAPERCLIPD_E2E_LOCKED

# --- setup ------------------------------------------------------------------
PAPERCLIPD_SRC=${PAPERCLIPD:-}
if [ -z "$PAPERCLIPD_SRC" ]; then
    for c in target/release/paperclipd target/debug/paperclipd; do
        [ -x "$c" ] && { PAPERCLIPD_SRC=$c; break; }
    done
fi
[ -n "$PAPERCLIPD_SRC" ] && [ -x "$PAPERCLIPD_SRC" ] ||
    die "no paperclipd binary: build it (cargo build --release) or set PAPERCLIPD"
if [ -z "${PAPERCLIPD:-}" ] && [ -n "$(find src units -newer "$PAPERCLIPD_SRC" -type f 2>/dev/null | head -1)" ]; then
    log "warning: $PAPERCLIPD_SRC is older than src/ or units/; testing it anyway (rebuild with cargo build --release)"
fi

t0=$(now_ms)
SETUP_OUT=$("$E2E/setup-paperclip.sh") || die "tests/e2e/setup-paperclip.sh failed"
eval "$SETUP_OUT"
: "${NODE_BIN:?}" "${PAPERCLIPAI_BIN:?}" "${PAPERCLIP_USER:?}" "${PAPERCLIP_HOME_DIR:?}" "${DATA_DIR:?}" "${NODE_DIR:?}" "${NPM_SHIM:?}"
log "setup: Paperclip ready in $(secs_since "$t0") s ($NPM_SHIM -> $(readlink "$NPM_SHIM"), Node $("$NODE_BIN" --version) in $NODE_DIR, /usr/bin/node $(/usr/bin/node --version 2>/dev/null || echo missing), data $DATA_DIR)"

PC_UID=$(id -u "$PAPERCLIP_USER")
PC_GID=$(id -g "$PAPERCLIP_USER")
CACHE=$(dirname "$(dirname "$PAPERCLIPAI_BIN")")
BIN=$CACHE/bin/paperclipd
tmp=$(mktemp "$CACHE/bin/.paperclipd.XXXXXX")
cp "$PAPERCLIPD_SRC" "$tmp" && chmod 755 "$tmp" && mv -f "$tmp" "$BIN"
log "setup: testing $PAPERCLIPD_SRC ($("$BIN" --version)) as $BIN"

# python3 for the test user (a pyenv shim under /root is not reachable).
PY=
for c in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$c" ] && setpriv --reuid="$PC_UID" --regid="$PC_GID" --init-groups "$c" -c '' 2>/dev/null && { PY=$c; break; }
done
[ -n "$PY" ] || die "no python3 that $PAPERCLIP_USER can run"

WORK=$(mktemp -d /tmp/paperclipd-e2e.XXXXXX)
chmod 755 "$WORK"
chown "$PC_UID:$PC_GID" "$WORK"
cp "$E2E"/notify-listener.py "$E2E"/health-poller.py "$E2E"/check-ready.py "$E2E"/user-manager-inner.sh \
    "$E2E"/watchdog-inner.sh "$WORK"/
chmod 755 "$WORK"/*.py "$WORK"/*.sh

# Runs a command as the test user with a clean environment: the real npm
# layout, as a user's shell has it (Node 24's directory and the npm prefix
# first on PATH, the machine's older /usr/bin/node after them), no wrapper.
AS_PC=(setpriv --reuid="$PC_UID" --regid="$PC_GID" --init-groups
    env -i HOME="$PAPERCLIP_HOME_DIR" USER="$PAPERCLIP_USER" LOGNAME="$PAPERCLIP_USER"
    PATH="$NODE_DIR:$(dirname "$NPM_SHIM"):/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8)
LOCK_FILE=$DATA_DIR/instances/default/paperclipd.lock
API_PORT=3100 PG_PORT=54329

# --- process helpers ----------------------------------------------------------
alive() { # true while $1 exists and is not a zombie
    local st
    st=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | awk '{print $1}') || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}
# wait_gone PID SECONDS: true once PID is gone (or a zombie) within the deadline.
wait_gone() {
    local deadline=$(( $(now_ms) + $2 * 1000 ))
    while alive "$1"; do [ "$(now_ms)" -lt "$deadline" ] || return 1; sleep 0.01; done
}
# Processes of the test user (pid ppid stat command), minus the pids given.
pc_procs() {
    local skip=" $* " pid rest
    { ps -u "$PC_UID" -o pid=,ppid=,stat=,args= 2>/dev/null || true; } | while read -r pid rest; do
        [[ $skip == *" $pid "* ]] || printf '%s %s\n' "$pid" "$rest"
    done
}
# Kill every process of the test user (by pid); print what was there.
kill_pc_procs() {
    local list pids
    list=$(pc_procs)
    [ -n "$list" ] || return 0
    printf '%s\n' "$list"
    pids=$(awk '{print $1}' <<<"$list")
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    local deadline=$(( $(now_ms) + 5000 ))
    while [ -n "$(pc_procs | awk '$3 !~ /^Z/')" ] && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
}
listening() { # listening PORT: a TCP socket listens on PORT (any address)
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); if (a[n] == p) f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
# reap PID: a background job's exit status (once it is gone) into REAPED.
# Not in $(...): a subshell cannot wait for this shell's children.
reap() { REAPED=0; wait "$1" || REAPED=$?; }

# --- scenario bookkeeping -----------------------------------------------------
PASSED=0 FAILED=0
FAIL_WHY=
BG=()       # background jobs of the current scenario, killed in cleanup
fail() { [ -n "$FAIL_WHY" ] || FAIL_WHY=$*; info "FAILED CHECK: $*"; }

cleanup_bg() {
    local p
    tmux_stop
    for p in "${BG[@]}"; do
        if alive "$p"; then
            kill -TERM "$p" 2>/dev/null || true
            wait_gone "$p" 35 || kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
    BG=()
}

run_scenario() {
    local name=$1 fn=$2 t left
    if [ -n "${E2E_ONLY:-}" ] && [[ " $E2E_ONLY " != *" ${name%%-*} "* ]]; then return 0; fi
    log ""
    log "== $name"
    left=$(kill_pc_procs)
    [ -z "$left" ] || info "note: killed processes of $PAPERCLIP_USER left from before: $(tr '\n' ';' <<<"$left")"
    if listening "$API_PORT" || listening "$PG_PORT"; then
        info "note: port $API_PORT or $PG_PORT is in use before the scenario"
    fi
    FAIL_WHY='' BG=()
    SDIR=$WORK/$name
    install -d -o "$PC_UID" -g "$PC_GID" -m 755 "$SDIR"
    t=$(now_ms)
    "$fn" || [ -n "$FAIL_WHY" ] || fail "scenario aborted"
    cleanup_bg
    # Nothing of the test user may survive a scenario.
    local deadline=$(( $(now_ms) + 3000 ))
    while [ -n "$(pc_procs)" ] && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
    left=$(kill_pc_procs)
    [ -z "$left" ] || fail "processes of $PAPERCLIP_USER left after the scenario: $(tr '\n' ';' <<<"$left")"
    info "elapsed: $(secs_since "$t") s"
    if [ -z "$FAIL_WHY" ]; then
        PASSED=$((PASSED + 1)); log "PASS $name"
    else
        FAILED=$((FAILED + 1)); log "FAIL $name: $FAIL_WHY"
    fi
}

on_exit() {
    local rc=$?
    cleanup_bg
    # Only once the test user was ours (after preflight).
    [ -z "$OWN_USER" ] || kill_pc_procs >/dev/null 2>&1 || true
    if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && [ "${E2E_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    elif [ -z "$SUMMARY" ]; then
        echo "e2e: logs kept in $WORK" >&2
    fi
}
OWN_USER='' SUMMARY=''
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- building blocks ----------------------------------------------------------
# start_listener DIR: a NOTIFY_SOCKET (DIR/notify.sock) logging to DIR/notify.log;
# sets LISTENER.
start_listener() {
    local dir=$1 deadline
    # The log exists, the test user's, before the listener opens it: a root
    # `: >` racing the listener's open made it root's, and the listener died
    # with EACCES (s7 in a CI run: no READY=1 seen, though paperclipd sent it).
    install -o "$PC_UID" -g "$PC_GID" -m 644 /dev/null "$dir/notify.log"
    "${AS_PC[@]}" "$PY" "$WORK/notify-listener.py" "$dir/notify.sock" "$dir/notify.log" </dev/null \
        >>"$dir/listener.err" 2>&1 &
    LISTENER=$!
    BG+=("$LISTENER")
    deadline=$(( $(now_ms) + 10000 ))
    until [ -S "$dir/notify.sock" ]; do
        alive "$LISTENER" && [ "$(now_ms)" -lt "$deadline" ] || { fail "the notify listener did not start: $(cat "$dir/listener.err")"; return 1; }
        sleep 0.01
    done
}
# listener_alive DIR: the notify listener still runs (a dead one would turn
# every later wait into a timeout that blames paperclipd).
listener_alive() {
    alive "$LISTENER" && return 0
    fail "the notify listener died: $(tr '\n' ' ' <"$1/listener.err" | cut -c1-300)"; return 1
}
# start_run DIR: `paperclipd run` as the test user with NOTIFY_SOCKET=DIR/notify.sock,
# output in DIR/run.out; sets RUN_PID (paperclipd's own pid: setpriv and env exec).
start_run() {
    local dir=$1
    : >"$dir/notify.log" # (the listener's: start_listener made it)
    "${AS_PC[@]}" NOTIFY_SOCKET="$dir/notify.sock" "$BIN" run --home "$DATA_DIR" </dev/null >"$dir/run.out" 2>&1 &
    RUN_PID=$!
    BG+=("$RUN_PID")
}
# wait_ready DIR SECONDS: until READY=1 is in DIR/notify.log.
wait_ready() {
    local dir=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
    until grep -q ' READY=1$' "$dir/notify.log" 2>/dev/null; do
        if ! alive "$RUN_PID"; then
            reap "$RUN_PID"
            fail "paperclipd exited (status $REAPED) before READY=1"
            tail_out "$dir/run.out"; return 1
        fi
        listener_alive "$dir" || return 1
        if [ "$(now_ms)" -ge "$deadline" ]; then
            fail "no READY=1 within $2 s"; tail_out "$dir/run.out"; return 1
        fi
        sleep 0.01
    done
}
tail_out() { info "--- last lines of $1:"; tail -n 25 "$1" 2>/dev/null | sed 's/^/      /'; }
# stop_run DIR SIGNAL SECONDS: send SIGNAL to paperclipd, wait for it; sets RUN_RC.
stop_run() {
    local t
    t=$(now_ms)
    kill "-$2" "$RUN_PID"
    if ! wait_gone "$RUN_PID" "$3"; then
        fail "paperclipd did not exit within $3 s of SIG$2"
        kill -KILL "$RUN_PID" 2>/dev/null || true
        wait_gone "$RUN_PID" 5 || true
    fi
    reap "$RUN_PID"; RUN_RC=$REAPED
    STOP_MS=$(( $(now_ms) - t ))
}
lock_field() { # lock_field FIELD [LOCK]: a field of the lock record (default: the data dir's)
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' "${2:-$LOCK_FILE}" "$1" 2>/dev/null
}
lock_child_pid() { lock_field child_pid "${1:-}"; } # the server pid from the lock record
exe_name() { local e; e=$(readlink "/proc/$1/exe" 2>/dev/null) && echo "${e##*/}"; }
# Pids of the test user's Paperclip server processes (node shows up as
# "MainThread" in /proc/PID/comm, so look at the executable).
server_pids() {
    local p
    for p in $(pgrep -u "$PC_UID" || true); do
        case $(exe_name "$p") in node | postgres) echo "$p" ;; esac
    done
}
ppid_of() { awk '{print $4}' "/proc/$1/stat" 2>/dev/null | head -1; } # (comm has no spaces here)
# no_pc_procs_now WHAT [SKIP_PIDS...]: fail if any process of the test user exists.
no_pc_procs_now() {
    local what=$1 left; shift
    left=$(pc_procs "$@")
    if [ -n "$left" ]; then fail "$what: processes of $PAPERCLIP_USER remain: $(tr '\n' ';' <<<"$left")"; return 1; fi
    info "no process of $PAPERCLIP_USER remains $what"
}
ports_free() {
    local p bad=
    for p in "$API_PORT" "$PG_PORT"; do listening "$p" && bad+=" $p"; done
    if [ -n "$bad" ]; then fail "$1: still listening on port(s)$bad"; return 1; fi
    info "ports $API_PORT and $PG_PORT are free $1"
}

# --- a real terminal: tmux as the test user ----------------------------------
TMUX_SOCK=
# tmux_start DIR RC_LINE...: an interactive bash in a 220x50 tmux pane as the test
# user. PROMPT_COMMAND appends each command's exit status to DIR/status (a list
# such as `cmd; echo $?` would go on when `cmd` is suspended). Sets TMUX_PIDS.
tmux_start() {
    local dir=$1; shift
    TMUX_SOCK=$dir/tmux.sock
    { printf "PS1='\$ '\n"; printf '%s\n' "$@"; printf "PROMPT_COMMAND='echo \$? >> %s/status'\n" "$dir"; } >"$dir/rc"
    : >"$dir/status"
    chown "$PC_UID:$PC_GID" "$dir/rc" "$dir/status"
    tm -f /dev/null new-session -d -x 220 -y 50 bash --noprofile --rcfile "$dir/rc" -i ||
        { fail "tmux did not start"; return 1; }
    wait_statuses "$dir" 1 10 || return 1
    TMUX_PIDS="$(tm display-message -p -t 0 '#{pid} #{pane_pid}')"
}
tm() { "${AS_PC[@]}" TERM=xterm-256color tmux -S "$TMUX_SOCK" "$@"; }
tmux_stop() { if [ -n "$TMUX_SOCK" ]; then tm kill-server 2>/dev/null || true; TMUX_SOCK=; fi; }
screen_of() { tm capture-pane -p -J -S - -t 0; }
type_line() { tm send-keys -t 0 -l "$1" && tm send-keys -t 0 Enter; }
# wait_screen TEXT SECONDS: until TEXT is on the screen.
wait_screen() {
    local deadline=$(( $(now_ms) + $2 * 1000 ))
    until screen_of | grep -qF -- "$1"; do
        if [ "$(now_ms)" -ge "$deadline" ]; then
            fail "'$1' not on the screen within $2 s"; screen_tail; return 1
        fi
        sleep 0.05
    done
}
# wait_statuses DIR N SECONDS: until the shell recorded N exit statuses; sets STATUS (the Nth).
wait_statuses() {
    local deadline=$(( $(now_ms) + $3 * 1000 ))
    until [ "$(wc -l <"$1/status" 2>/dev/null || echo 0)" -ge "$2" ]; do
        if [ "$(now_ms)" -ge "$deadline" ]; then
            fail "the shell's command $(( $2 - 1 )) did not finish within $3 s"; screen_tail; return 1
        fi
        sleep 0.01
    done
    STATUS=$(sed -n "${2}p" "$1/status")
}
screen_tail() { info "--- the screen's last lines:"; screen_of 2>/dev/null | grep -v '^$' | tail -n 25 | cut -c1-200 | sed 's/^/      /'; }
# wait_notify DIR SECONDS: until READY=1 is in DIR/notify.log, while the shell runs paperclipd.
wait_notify() {
    local dir=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
    until grep -q ' READY=1$' "$dir/notify.log" 2>/dev/null; do
        if [ "$(wc -l <"$dir/status")" -ge 2 ]; then
            fail "paperclipd exited (status $(sed -n 2p "$dir/status")) before READY=1"; screen_tail; return 1
        fi
        listener_alive "$dir" || return 1
        if [ "$(now_ms)" -ge "$deadline" ]; then fail "no READY=1 within $2 s"; screen_tail; return 1; fi
        sleep 0.01
    done
}
# check_screen FILE: every paperclipd line starts at column 0, and none holds the
# server's text (Paperclip's log lines start with [HH:MM:SS]).
check_screen() {
    local bad
    bad=$(awk 'index($0, "paperclipd:") > 1 { print "not at column 0: " $0 }
               /^paperclipd:/ && /\[[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\] [A-Z]+:/ { print "mixed: " $0 }' "$1" | head -3)
    if [ -n "$bad" ]; then fail "the terminal has bad lines: $(tr '\n' ';' <<<"$bad" | cut -c1-300)"
    else info "screen: $(grep -c '^paperclipd:' "$1") paperclipd lines, each a whole line at column 0"; fi
}
proc_state() { cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | awk '{print $1}'; }
# first_run DIR: a fresh home (DIR/home) for the test user, a notify listener, and
# `paperclipd run` typed into a tmux shell (RC lines in the rest of the arguments);
# waits for onboarding's first question. Sets HOME_DIR, T0.
first_run() {
    local dir=$1; shift
    HOME_DIR=$dir/home
    install -d -o "$PC_UID" -g "$PC_GID" -m 700 "$HOME_DIR"
    start_listener "$dir" || return 1
    tmux_start "$dir" "export NOTIFY_SOCKET=$dir/notify.sock" "$@" || return 1
    T0=$(now_ms)
    type_line "$BIN run --home $HOME_DIR"
    wait_screen "Choose setup path" 60 || return 1
    info "onboarding's first question after $(secs_since "$T0") s"
}
# ctrl_c_exit DIR N: Ctrl-C; paperclipd (the shell's command N) exits 0, and at
# that moment no process of the test user remains but the shell, tmux and the listener.
ctrl_c_exit() {
    local t
    t=$(now_ms)
    tm send-keys -t 0 C-c
    wait_statuses "$1" "$2" 60 || return 1
    info "Ctrl-C: paperclipd exited $STATUS after $(secs_since "$t") s"
    [ "$STATUS" -eq 0 ] || fail "paperclipd exited $STATUS after Ctrl-C (want 0)"
    # shellcheck disable=SC2086
    no_pc_procs_now "the moment paperclipd exited" "$LISTENER" $TMUX_PIDS || true
    ports_free "the moment paperclipd exited" || true
}

# --- scenarios ----------------------------------------------------------------

# 1. READY=1 only once /api/health says "ok" (not during "starting").
s1_ready() {
    local d=$SDIR t poller rc
    start_listener "$d" || return 1
    "$PY" "$WORK/health-poller.py" 127.0.0.1 "$API_PORT" 5 180 "$d/poll.log" </dev/null 2>"$d/poller.err" &
    poller=$!
    BG+=("$poller")
    local deadline=$(( $(now_ms) + 10000 ))
    until [ -s "$d/poll.log" ]; do
        alive "$poller" && [ "$(now_ms)" -lt "$deadline" ] || { fail "the health poller did not start: $(cat "$d/poller.err")"; return 1; }
        sleep 0.01
    done
    t=$(now_ms)
    start_run "$d"
    wait_ready "$d" 180 || return 1
    info "READY=1 $(secs_since "$t") s after start; $(grep -m1 ' STATUS=ready' "$d/notify.log" | cut -d' ' -f3-)"
    local child exe
    child=$(lock_child_pid) exe=$(readlink "/proc/$child/exe" 2>/dev/null || true)
    if [ "$exe" = "$(readlink -f "$NODE_DIR/node")" ]; then info "the server $child is Node 24 ($exe), found through PATH by the npm shim"
    else fail "the server '$child' runs '$exe' (want $(readlink -f "$NODE_DIR/node"))"; fi
    wait_gone "$poller" 10 || { fail "the poller did not finish within 10 s after READY=1"; return 1; }
    if ! grep -q '^FIRST_OK' "$d/poll.log"; then fail "the poller never saw \"ok\": $(tail -n 3 "$d/poll.log" | tr '\n' ';')"; return 1; fi
    local verdict
    rc=0; verdict=$("$PY" "$WORK/check-ready.py" "$d/notify.log" "$d/poll.log") || rc=$?
    while IFS= read -r l; do info "$l"; done <<<"$verdict"
    READY_DELAYS+=("$(sed -n 's/^READY_DELAY_MS=//p' <<<"$verdict")")
    [ "$rc" -eq 0 ] || fail "$(grep -m1 '^PROBLEM' <<<"$verdict" | cut -d' ' -f2-)"

    # The notify path: the server's own `systemd-notify --ready` reached
    # paperclipd's socket (never the manager's), and its status is quoted
    # in ours (after READY=1 when paperclipd's probe saw "ok" first).
    local heard
    heard=$(grep -m1 'notified READY=1' "$d/run.out" || true)
    if [ -n "$heard" ]; then info "notify path taken: ${heard#paperclipd: }"
    else fail "the server's READY=1 never reached paperclipd's notify socket: $(grep -i notif "$d/run.out" | head -n 3 | tr '\n' ';')"; fi
    deadline=$(( $(now_ms) + 10000 ))
    until grep -q ' STATUS=.*Listening on ' "$d/notify.log"; do
        [ "$(now_ms)" -lt "$deadline" ] || { fail "the server's 'Listening on' status never reached the manager's STATUS="; break; }
        sleep 0.02
    done
    grep -q ' STATUS=.*Listening on ' "$d/notify.log" && info "manager saw: $(grep -m1 ' STATUS=.*Listening on ' "$d/notify.log" | cut -d' ' -f2-)"
    # The server's raw words would be `STATUS=Listening on …` itself.
    if grep -q ' STATUS=Listening on ' "$d/notify.log"; then fail "the server's own STATUS= reached the manager unquoted"; fi

    local ct
    ct=$(curl -sS -o /dev/null --max-time 5 -w '%{http_code} %{content_type}' "http://127.0.0.1:$API_PORT/" 2>&1) || true
    if [[ $ct == "200 text/html"* ]]; then info "/ serves $ct"; else fail "/ answered '$ct' (want 200 text/html)"; fi

    rc=0; "${AS_PC[@]}" timeout 30 "$BIN" probe --home "$DATA_DIR" >"$d/probe.out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then info "probe: exit 0: $(tr '\n' ';' <"$d/probe.out")"
    else fail "paperclipd probe exited $rc: $(tr '\n' ';' <"$d/probe.out")"; fi

    rc=0; "${AS_PC[@]}" timeout 30 "$BIN" status --home "$DATA_DIR" --json >"$d/status.json" 2>"$d/status.err" || rc=$?
    local st
    st=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$d/status.json" 2>/dev/null || echo "?")
    if [ "$rc" -eq 0 ] && [ "$st" = ready ]; then info "status --json: exit 0, state ready"
    else fail "status --json: exit $rc, state '$st' (want 0, ready): $(head -c 400 "$d/status.err")"; fi

    stop_run "$d" TERM 40
    [ "$RUN_RC" -eq 0 ] || fail "paperclipd exited $RUN_RC after SIGTERM (want 0)"
    return 0
}

# 2. SIGTERM: exit 0 within 30 s, Paperclip stopped PostgreSQL itself, nothing left.
s2_sigterm() {
    local d=$SDIR t
    start_listener "$d" || return 1
    t=$(now_ms)
    start_run "$d"
    wait_ready "$d" 180 || return 1
    info "READY=1 after $(secs_since "$t") s"
    local child
    child=$(lock_child_pid)
    info "lock record: paperclipd $RUN_PID, server $child ($(exe_name "$child"))"
    stop_run "$d" TERM 30
    info "exit $RUN_RC ${STOP_MS} ms after SIGTERM"
    [ "$RUN_RC" -eq 0 ] || fail "paperclipd exited $RUN_RC after SIGTERM (want 0)"
    no_pc_procs_now "right after paperclipd exited" "$LISTENER" || true
    ports_free "right after paperclipd exited" || true
    if grep -q 'Stopping embedded PostgreSQL' "$d/run.out"; then
        info "server output: $(grep -m1 -o 'Stopping embedded PostgreSQL.*' "$d/run.out" | sed 's/\x1b\[[0-9;]*m//g')"
    else
        fail "the server's output has no 'Stopping embedded PostgreSQL' line (no ordered shutdown)"; tail_out "$d/run.out"
    fi
    grep -q ' STOPPING=1$' "$d/notify.log" && info "STOPPING=1 was sent" || fail "no STOPPING=1 notification"
    local rc=0
    "${AS_PC[@]}" timeout 30 "$BIN" status --home "$DATA_DIR" >"$d/status.out" 2>&1 || rc=$?
    [ "$rc" -eq 3 ] && info "status after stop: exit 3 (stopped)" || fail "status after stop exited $rc (want 3 stopped): $(tr '\n' ';' <"$d/status.out")"
    return 0
}

# 3. SIGKILL of the server: exit 137, orphaned postgres removed, a new run is ready again.
s3_server_killed() {
    local d=$SDIR t child pgs
    start_listener "$d" || return 1
    t=$(now_ms)
    start_run "$d"
    wait_ready "$d" 180 || return 1
    info "READY=1 after $(secs_since "$t") s"
    child=$(lock_child_pid)
    if [ -z "$child" ] || [ "$(exe_name "$child")" != node ]; then
        fail "lock record's child_pid '$child' is not a node process"; return 1
    fi
    [ "$(ppid_of "$child")" = "$RUN_PID" ] || fail "server $child is not a child of paperclipd $RUN_PID (ppid $(ppid_of "$child"))"
    pgs=$(for p in $(server_pids); do [ "$(exe_name "$p")" = postgres ] && echo "$p"; done | tr '\n' ' ')
    [ -n "$pgs" ] || { fail "no postgres process before the kill"; return 1; }
    info "server node $child, postgres pids: $pgs"
    kill -KILL "$child"
    t=$(now_ms)
    if ! wait_gone "$RUN_PID" 30; then fail "paperclipd did not exit within 30 s of the server's death"; return 1; fi
    local rc
    reap "$RUN_PID"; rc=$REAPED
    info "paperclipd exit $rc $(( $(now_ms) - t )) ms after the server was killed"
    [ "$rc" -eq 137 ] || fail "paperclipd exited $rc after its server was SIGKILLed (want 137)"
    no_pc_procs_now "right after paperclipd exited" "$LISTENER" || true
    ports_free "right after paperclipd exited" || true
    grep -qi 'signal\|killed\|SIGKILL' "$d/run.out" && info "paperclipd said: $(grep -i -m1 'signal\|killed\|SIGKILL' "$d/run.out" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200)"

    # A new run must come up on the same data dir.
    mv "$d/run.out" "$d/run1.out"
    t=$(now_ms)
    start_run "$d"
    wait_ready "$d" 180 || return 1
    info "new run: READY=1 after $(secs_since "$t") s"
    stop_run "$d" TERM 30
    [ "$RUN_RC" -eq 0 ] || fail "the new run exited $RUN_RC after SIGTERM (want 0)"
    no_pc_procs_now "after the new run stopped" "$LISTENER" || true
    return 0
}

# 4. A stranger on the port: exit 75 naming the port; no server started.
s4_port_taken() {
    local d=$SDIR stranger t seen=
    "$PY" -c '
import socket, sys, signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept(); c.close()
' "$API_PORT" </dev/null 2>"$d/stranger.err" &
    stranger=$!
    BG+=("$stranger")
    local deadline=$(( $(now_ms) + 10000 ))
    until listening "$API_PORT"; do
        alive "$stranger" && [ "$(now_ms)" -lt "$deadline" ] || { fail "the foreign listener did not start: $(cat "$d/stranger.err")"; return 1; }
        sleep 0.01
    done
    info "foreign listener (root, pid $stranger) on 127.0.0.1:$API_PORT"
    t=$(now_ms)
    "${AS_PC[@]}" "$BIN" run --home "$DATA_DIR" </dev/null >"$d/run.out" 2>&1 &
    RUN_PID=$!
    BG+=("$RUN_PID")
    # Watch for any sign of a Paperclip server while paperclipd runs.
    deadline=$(( $(now_ms) + 60000 ))
    while alive "$RUN_PID"; do
        if [ -n "$(server_pids)" ]; then seen+=" node/postgres-process"; fi
        if listening 3101 || listening "$PG_PORT"; then seen+=" listener-on-3101/$PG_PORT"; fi
        [ -z "$seen" ] || break
        [ "$(now_ms)" -lt "$deadline" ] || { fail "paperclipd still running after 60 s"; break; }
        sleep 0.005
    done
    wait_gone "$RUN_PID" 40 || true
    local rc
    reap "$RUN_PID"; rc=$REAPED
    info "paperclipd exit $rc after $(secs_since "$t") s: $(sed 's/\x1b\[[0-9;]*m//g' "$d/run.out" | tr '\n' ' ' | cut -c1-300)"
    [ -z "$seen" ] || fail "a Paperclip server was started:$seen"
    [ "$rc" -eq 75 ] || fail "paperclipd exited $rc with the port taken (want 75)"
    grep -q "$API_PORT" "$d/run.out" || fail "the message does not name port $API_PORT"
    grep -q "$stranger" "$d/run.out" && info "the message names the owner pid $stranger" ||
        info "note: the message does not name the owner pid $stranger (another user's process)"
    listening 3101 && fail "something listens on 3101"
    return 0
}

# in_user_manager INNER: runs $WORK/INNER as the test user next to its own real
# `systemd --user`, output in $SDIR/inner.out; relays its CHECK/TIME lines.
in_user_manager() {
    local d=$SDIR rc=0 unit_dir=$PAPERCLIP_HOME_DIR/.config/systemd/user stale t
    stale=$(find "$unit_dir" -name 'paperclip@*' 2>/dev/null || true)
    if [ -n "$stale" ]; then
        info "note: removing stale unit files from an earlier run: $(tr '\n' ' ' <<<"$stale")"
        find "$unit_dir" -depth -name 'paperclip@*' -exec rm -rf {} +
    fi
    t=$(now_ms)
    # WUM_KEEP + TMPDIR: the harness leaves its journal copy under $d (the test
    # user, a system user, cannot read its own journal lines from inside).
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        WUM_HOME="$PAPERCLIP_HOME_DIR" WUM_KEEP=1 TMPDIR="$d" PCD_BIN="$BIN" PCD_NODE_DIR="$NODE_DIR" PCD_NPM_SHIM="$NPM_SHIM" PCD_DATA="$DATA_DIR" \
        PCD_PY="$PY" PCD_OUT="$d" \
        timeout -k 10 300 "$ROOT/tests/support/with-user-manager" --user "$PAPERCLIP_USER" -- \
        bash "$WORK/$1" </dev/null >"$d/inner.out" 2>&1 || rc=$?
    local line
    while IFS= read -r line; do
        case $line in
            "CHECK ok "*) info "ok: ${line#CHECK ok }" ;;
            "CHECK fail "*) fail "${line#CHECK fail }" ;;
            "TIME "*) set -- $line; info "$2: $3 ms" ;;
            "with-user-manager: kept "*) ;;
            *) info "$line" ;;
        esac
    done <"$d/inner.out"
    info "harness exited $rc after $(secs_since "$t") s"
    [ "$rc" -eq 0 ] || fail "with-user-manager / inner script exited $rc"
    no_pc_procs_now "after the harness exited" || true
    JOURNAL=$(find "$d" -path "$d/wum.*/journal.txt" 2>/dev/null | head -1)
    [ -n "$JOURNAL" ] || fail "the harness left no journal copy under $d"
    [ -z "$JOURNAL" ] || sed -i 's/\x1b\[[0-9;]*m//g' "$JOURNAL"
    stale=$(find "$unit_dir" -name 'paperclip@*' 2>/dev/null || true)
    [ -z "$stale" ] || fail "unit files left in $unit_dir: $(tr '\n' ' ' <<<"$stale")"
}

# 5. install --now / status / stop / uninstall under a real non-root user manager.
s5_user_manager() {
    local d=$SDIR
    in_user_manager user-manager-inner.sh
    grep -q '^CHECK ok uninstall' "$d/inner.out" || fail "the inner script did not get to uninstall"
    local journal=$JOURNAL line
    if [ -n "$journal" ]; then
        grep -E 'paperclip(d|@default)' "$journal" | grep -E 'ready after|Started|Stopp|exited|stopped' | cut -c1-220 | sed 's/^/journal: /' |
            while IFS= read -r line; do info "$line"; done
        grep -q 'Stopping embedded PostgreSQL' "$journal" ||
            fail "the unit's journal has no 'Stopping embedded PostgreSQL' line (no ordered shutdown)"
        grep -q 'Paperclip needs Node.js' "$journal" &&
            info "journal: $(grep -m1 -o 'Paperclip needs Node.js.*' "$journal" | cut -c1-200)" ||
            fail "the unit's journal does not say why it refused the old Node.js"
    fi
    return 0
}

# 11. A watchdog timeout under a real user manager: SIGTERM (WatchdogSignal=),
# Paperclip's ordered stop of PostgreSQL, no SIGKILL anywhere, a restart.
s12_hot_restart() {
    local dir=$SDIR old new out rc report
    start_listener "$dir" || return
    start_run "$dir"
    wait_ready "$dir" 120 || return
    old=$(lock_child_pid)
    info "server pid before the reload: $old"
    set +e
    out=$("${AS_PC[@]}" "$BIN" reload --home "$DATA_DIR" --json 2>"$dir/reload.err")
    rc=$?
    set -e
    info "reload: exit $rc: $out"
    [ "$rc" -eq 0 ] || { fail "paperclipd reload exited $rc: $(tr '\n' ' ' <"$dir/reload.err")"; tail_out "$dir/run.out"; return 1; }
    new=$(lock_child_pid)
    [ -n "$new" ] && [ "$new" != "$old" ] || { fail "the server was not replaced ($old -> $new)"; return 1; }
    alive "$old" && { fail "the old server $old still runs"; return 1; }
    grep -q ' RELOADING=1$' "$dir/notify.log" || { fail "no RELOADING=1"; return 1; }
    [ "$(grep -c ' READY=1$' "$dir/notify.log")" -ge 2 ] || { fail "no READY=1 after the reload"; return 1; }
    report=$DATA_DIR/instances/default/hot-restart-report.json
    [ -f "$report" ] || { fail "the real server wrote no $report"; return 1; }
    info "report: $(tr -d '\n ' <"$report" | cut -c1-400)"
    "$PY" - "$report" "$new" "$out" <<'PYEOF' || { fail "the report does not match the reload"; return 1; }
import json, sys
r = json.load(open(sys.argv[1]))
o = json.loads(sys.argv[3])
assert r["newServerPid"] == int(sys.argv[2]), (r["newServerPid"], sys.argv[2])
assert o["report"]["requestedAt"] == r["requestedAt"], (o, r)
assert r["adoptedRunIds"] == [] and r["lostRunIds"] == [], r
PYEOF
    [ ! -e "$DATA_DIR/instances/default/hot-restart-intent.json" ] || { fail "the intent was left behind"; return 1; }
    stop_run "$dir" TERM 60
    [ "$RUN_RC" -eq 0 ] || fail "paperclipd exited $RUN_RC after SIGTERM (want 0)"
}

s11_watchdog() {
    local d=$SDIR journal line n
    in_user_manager watchdog-inner.sh
    grep -q '^CHECK ok status: ready after the restart' "$d/inner.out" || fail "the inner script did not get to the restarted instance"
    journal=$JOURNAL
    [ -n "$journal" ] || return 0
    grep -E 'paperclipd|PostgreSQL|postgres' "$journal" | grep -iE 'SIGTERM|SIGABRT|SIGKILL|Stopping|shut down|ready after|stopped|killed' |
        cut -c1-220 | sed 's/^/journal: /' | while IFS= read -r line; do info "$line"; done
    grep -q 'received SIGTERM' "$journal" || fail "paperclipd did not log the watchdog's SIGTERM"
    grep -q 'SIGABRT' "$journal" && fail "the journal mentions SIGABRT (the default WatchdogSignal)"
    if grep -qE 'SIGKILL|killed with signal 9|signal KILL' "$journal"; then
        fail "the journal mentions a SIGKILL: $(grep -m1 -E 'SIGKILL|signal 9|signal KILL' "$journal" | cut -c1-200)"
    else
        info "no SIGKILL in the journal"
    fi
    n=$(grep -c 'Stopping embedded PostgreSQL' "$journal" || true)
    [ "${n:-0}" -ge 1 ] && info "Paperclip stopped its PostgreSQL itself ($n time(s))" ||
        fail "no 'Stopping embedded PostgreSQL' in the journal: PostgreSQL was not stopped in order"
    return 0
}

# 10. Stale postmaster.pid. (a) paperclipd and node SIGKILLed, their PostgreSQL
#    left serving the data dir: `run` exits 75 naming it and touches nothing.
#    (b) everything of the user SIGKILLed (a power loss) and line 1 of
#    postmaster.pid naming a live unrelated process: upstream alone refuses to
#    start (control); `run` moves the file aside and is ready.
s10_stale_pid() {
    local d=$SDIR t child pg rc unrelated pmfile=$DATA_DIR/instances/default/db/postmaster.pid
    start_listener "$d" || return 1
    t=$(now_ms)
    start_run "$d"
    wait_ready "$d" 180 || return 1
    info "READY=1 after $(secs_since "$t") s"
    child=$(lock_child_pid)
    pg=$(head -n1 "$pmfile" 2>/dev/null || true)
    if [ -z "$pg" ] || [ "$(exe_name "$pg")" != postgres ]; then
        fail "postmaster.pid names '$pg', not a running postgres"; return 1
    fi
    kill -KILL "$RUN_PID" "$child"
    wait_gone "$RUN_PID" 10 || true
    reap "$RUN_PID"
    wait_gone "$child" 10 || true
    # A SIGKILLed node's main thread shows as a zombie while its last
    # threads still exit, holding the API socket: the case to arrange is a
    # PostgreSQL left alone, so wait until the API port is closed too.
    local closed_by=$(( $(now_ms) + 10000 ))
    while listening "$API_PORT"; do
        [ "$(now_ms)" -lt "$closed_by" ] || { fail "port $API_PORT still listens 10 s after node was SIGKILLed"; return 1; }
        sleep 0.01
    done
    alive "$pg" || { fail "PostgreSQL $pg died with node; the leftover case cannot be arranged"; return 1; }
    local pp
    pp=$(ppid_of "$pg")
    info "paperclipd and its server $child SIGKILLed; PostgreSQL $pg left running (ppid $pp: $(exe_name "$pp" || echo '?'))"

    local before after
    before=$(pc_procs | awk '{print $1}' | sort)
    rc=0; "${AS_PC[@]}" timeout 60 "$BIN" run --home "$DATA_DIR" </dev/null >"$d/run-live.out" 2>&1 || rc=$?
    after=$(pc_procs | awk '{print $1}' | sort)
    info "run beside it: exit $rc: $(sed 's/\x1b\[[0-9;]*m//g' "$d/run-live.out" | tr '\n' ' ' | cut -c1-240)"
    [ "$rc" -eq 75 ] || fail "run beside a leftover PostgreSQL exited $rc (want 75)"
    grep -q "PostgreSQL pid $pg" "$d/run-live.out" || fail "the message does not name PostgreSQL pid $pg"
    [ "$(head -n1 "$pmfile")" = "$pg" ] || fail "postmaster.pid was changed"
    [ "$before" = "$after" ] || fail "the refused run left processes behind: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"

    # A power loss: everything of the user is gone; the pid in line 1 now
    # belongs to an unrelated live process of the same user (so that
    # Paperclip's kill(pid, 0) succeeds, as when the pid is reused).
    kill_pc_procs >/dev/null
    "${AS_PC[@]}" sleep 1000 </dev/null >/dev/null 2>&1 &
    unrelated=$!
    BG+=("$unrelated")
    local deadline=$(( $(now_ms) + 10000 ))
    until [ "$(exe_name "$unrelated")" = sleep ]; do
        [ "$(now_ms)" -lt "$deadline" ] || { fail "the unrelated sleep did not start"; return 1; }
        sleep 0.01
    done
    "${AS_PC[@]}" sed -i "1s/.*/$unrelated/" "$pmfile"
    info "everything of $PAPERCLIP_USER SIGKILLed; postmaster.pid line 1 now names pid $unrelated ($(exe_name "$unrelated"), $PAPERCLIP_USER's)"

    t=$(now_ms)
    rc=0; "${AS_PC[@]}" PAPERCLIP_HOME="$DATA_DIR" timeout 90 "$PAPERCLIPAI_BIN" run --instance default \
        </dev/null >"$d/upstream.out" 2>&1 || rc=$?
    if grep -q 'Refusing to reuse PostgreSQL' "$d/upstream.out"; then
        info "control: paperclipai run alone exits $rc after $(secs_since "$t") s: $(grep -m1 -o 'Refusing to reuse PostgreSQL[^"]*' "$d/upstream.out" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-120)"
    else
        info "note: control: paperclipai run alone exited $rc without 'Refusing to reuse PostgreSQL' (upstream changed?)"
    fi
    # Stop whatever the control started; keep the unrelated process.
    local p
    for p in $(pc_procs "$unrelated" | awk '{print $1}'); do kill -KILL "$p" 2>/dev/null || true; done
    for p in $(pc_procs "$unrelated" | awk '{print $1}'); do wait_gone "$p" 10 || true; done
    alive "$unrelated" || { fail "the unrelated process died"; return 1; }
    [ -f "$pmfile" ] || { fail "the control removed postmaster.pid (upstream handled it); nothing left to test"; return 1; }
    "${AS_PC[@]}" sed -i "1s/.*/$unrelated/" "$pmfile"

    local d2=$d/after
    install -d -o "$PC_UID" -g "$PC_GID" -m 755 "$d2"
    start_listener "$d2" || return 1
    t=$(now_ms)
    start_run "$d2"
    wait_ready "$d2" 180 || return 1
    info "READY=1 $(secs_since "$t") s after start"
    local moved
    moved=$(grep -c 'moved the stale' "$d2/run.out" || true)
    [ "$moved" = 1 ] && info "paperclipd: $(grep -m1 -o 'moved the stale.*' "$d2/run.out" | cut -c1-220)" ||
        fail "want one 'moved the stale' line, got $moved"
    local aside
    aside=$(find "$(dirname "$pmfile")" -maxdepth 1 -name 'postmaster.pid.stale-*' | sort | tail -n 1)
    if [ -n "$aside" ] && [ "$(head -n1 "$aside")" = "$unrelated" ]; then
        info "kept as $(basename "$aside")"
        rm -f "$aside" # the test's own artifact; the cached data dir stays clean
    else
        fail "no postmaster.pid.stale-* naming pid $unrelated"
    fi
    alive "$unrelated" || fail "the unrelated process $unrelated was harmed"
    stop_run "$d2" TERM 40
    [ "$RUN_RC" -eq 0 ] || fail "paperclipd exited $RUN_RC after SIGTERM (want 0)"
    return 0
}

# 6. First run in a terminal, "Start Paperclip now?" Yes: the onboarding process
#    itself serves; paperclipd supervises it as the server.
s6_first_run_yes() {
    local d=$SDIR lock wrapper child health
    first_run "$d" || return 1
    tm send-keys -t 0 Enter # Quickstart
    wait_screen "Start Paperclip now?" 30 || return 1
    tm send-keys -t 0 Enter # Yes, the default
    wait_notify "$d" 240 || return 1
    info "READY=1 $(secs_since "$T0") s after paperclipd started"
    lock=$HOME_DIR/instances/default/paperclipd.lock
    wrapper=$(lock_field pid "$lock") child=$(lock_child_pid "$lock")
    if tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q ' onboard'; then
        info "the server is the onboarding process: pid $child ($(exe_name "$child") … onboard), supervised by $wrapper"
    else
        fail "lock record's server pid '$child' is not the onboarding process"
    fi
    status_ready "$HOME_DIR" || true

    # Ctrl-Z stops paperclipd and the server and gives the shell the terminal; fg resumes both.
    tm send-keys -t 0 C-z
    wait_statuses "$d" 2 30 || return 1
    local deadline=$(( $(now_ms) + 10000 ))
    until [ "$(proc_state "$wrapper")" = T ] && [ "$(proc_state "$child")" = T ]; do
        [ "$(now_ms)" -lt "$deadline" ] || { fail "Ctrl-Z: paperclipd $(proc_state "$wrapper"), server $(proc_state "$child") (want both T)"; break; }
        sleep 0.01
    done
    info "Ctrl-Z: shell status $STATUS; paperclipd $(proc_state "$wrapper"), server $(proc_state "$child")"
    type_line fg
    deadline=$(( $(now_ms) + 10000 ))
    until [ "$(proc_state "$wrapper")" != T ] && [ "$(proc_state "$child")" != T ]; do
        [ "$(now_ms)" -lt "$deadline" ] || { fail "fg: paperclipd $(proc_state "$wrapper"), server $(proc_state "$child")"; break; }
        sleep 0.01
    done
    health=$(curl -sS --max-time 10 "http://127.0.0.1:$API_PORT/api/health" 2>&1 | head -c 60) || true
    [[ $health == *'"status":"ok"'* ]] && info "fg: both run again; /api/health: $health" || fail "after fg /api/health answered '$health'"

    ctrl_c_exit "$d" 3 || return 1
    screen_of >"$d/screen.txt"; check_screen "$d/screen.txt"
    tmux_stop
}

# status_ready HOME: `paperclipd status --json` says ready (exit 0).
status_ready() {
    local rc=0 st
    "${AS_PC[@]}" timeout 30 "$BIN" status --home "$1" --json >"$SDIR/status.json" 2>"$SDIR/status.err" || rc=$?
    st=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$SDIR/status.json" 2>/dev/null || echo "?")
    if [ "$rc" -eq 0 ] && [ "$st" = ready ]; then info "status --json: exit 0, state ready"
    else fail "status --json: exit $rc, state '$st' (want 0, ready): $(head -c 400 "$SDIR/status.err")"; return 1; fi
}

# 7. The same with No: onboarding ends, `paperclipai run` starts. With `stty tostop`,
#    which must stop neither paperclipd nor the server.
s7_first_run_no() {
    local d=$SDIR child
    first_run "$d" "stty tostop" || return 1
    tm send-keys -t 0 Enter # Quickstart
    wait_screen "Start Paperclip now?" 30 || return 1
    tm send-keys -t 0 Right # No
    wait_screen "● No" 10 || return 1
    tm send-keys -t 0 Enter
    wait_notify "$d" 240 || return 1
    info "READY=1 $(secs_since "$T0") s after paperclipd started"
    child=$(lock_child_pid "$HOME_DIR/instances/default/paperclipd.lock")
    if tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q ' run --instance default'; then
        info "the server is \`paperclipai run\`: pid $child"
    else
        fail "lock record's server pid '$child' is not paperclipai run: $(tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null)"
    fi
    status_ready "$HOME_DIR" || true
    ctrl_c_exit "$d" 2 || return 1
    screen_of >"$d/screen.txt"; check_screen "$d/screen.txt"
    grep -q "You're all set" "$d/screen.txt" || fail "onboarding's No ending is not on the screen"
    tmux_stop
}

# 8. Ctrl-C at onboarding's first question: nothing written, nothing running, exit 0.
s8_first_run_cancel() {
    local d=$SDIR t
    first_run "$d" || return 1
    t=$(now_ms)
    tm send-keys -t 0 C-c
    wait_statuses "$d" 2 30 || return 1
    info "Ctrl-C at the first question: paperclipd exited $STATUS after $(secs_since "$t") s"
    [ "$STATUS" -eq 0 ] || fail "paperclipd exited $STATUS (want 0)"
    # shellcheck disable=SC2086
    no_pc_procs_now "the moment paperclipd exited" "$LISTENER" $TMUX_PIDS || true
    [ ! -e "$HOME_DIR/instances/default/config.json" ] || fail "config.json was written"
    screen_of >"$d/screen.txt"
    grep -q "onboarding was cancelled" "$d/screen.txt" && info "$(grep -m1 -o 'paperclipd: onboarding was cancelled.*' "$d/screen.txt" | cut -c1-150)" ||
        fail "paperclipd did not say that onboarding was cancelled"
    tmux_stop
}

# 9. SIGHUP and SIGQUIT to paperclipd reach the server as SIGTERM (Paperclip's ordered
#    stop; on SIGHUP or SIGQUIT itself its Node would orphan PostgreSQL): exit 0.
s9_hup_quit() {
    local d=$SDIR sig line
    start_listener "$d" || return 1
    for sig in HUP QUIT; do
        [ ! -e "$d/run.out" ] || mv "$d/run.out" "$d/run-before-$sig.out"
        start_run "$d"
        wait_ready "$d" 180 || return 1
        stop_run "$d" "$sig" 30
        info "SIG$sig: exit $RUN_RC after ${STOP_MS} ms"
        [ "$RUN_RC" -eq 0 ] || fail "paperclipd exited $RUN_RC after SIG$sig (want 0)"
        line=$(sed 's/\x1b\[[0-9;]*m//g' "$d/run.out" | grep -m1 'Stopping embedded PostgreSQL' || true)
        if [[ $line == *'"signal":"SIGTERM"'* ]]; then info "server: ${line:0:120}"
        else fail "SIG$sig: the server did not stop on SIGTERM: '${line:0:160}'"; tail_out "$d/run.out"; fi
        no_pc_procs_now "after SIG$sig" "$LISTENER" || true
    done
}

# Never kill what we did not start: wait (bounded) until the test user is idle.
preflight() {
    local deadline=$(( $(now_ms) + ${E2E_IDLE_WAIT:-60} * 1000 )) busy
    while :; do
        busy=$(pc_procs)
        listening "$API_PORT" && busy+="port $API_PORT in use;"
        listening "$PG_PORT" && busy+="port $PG_PORT in use;"
        [ -n "$busy" ] || return 0
        [ "$(now_ms)" -lt "$deadline" ] ||
            die "$PAPERCLIP_USER or its ports are busy (someone else's run?); not killing what this script did not start: $(tr '\n' ';' <<<"$busy")"
        sleep 0.2
    done
}
OWN_USER=
preflight
OWN_USER=1

READY_DELAYS=()
run_scenario s1-ready s1_ready
run_scenario s2-sigterm s2_sigterm
run_scenario s3-server-killed s3_server_killed
run_scenario s4-port-taken s4_port_taken
run_scenario s5-user-manager s5_user_manager
run_scenario s10-stale-pid s10_stale_pid
run_scenario s6-first-run-yes s6_first_run_yes
run_scenario s7-first-run-no s7_first_run_no
run_scenario s8-first-run-cancel s8_first_run_cancel
run_scenario s9-hup-quit s9_hup_quit
run_scenario s11-watchdog s11_watchdog
run_scenario s12-hot-restart s12_hot_restart

log ""
[ ${#READY_DELAYS[@]} -eq 0 ] || log "READY=1 delay after the first \"ok\": ${READY_DELAYS[*]} ms"
log "total: $((SECONDS - T_START)) s"
[ "$FAILED" -eq 0 ] && [ "${E2E_KEEP:-0}" != 1 ] || log "logs kept in $WORK"
SUMMARY=1
log "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
