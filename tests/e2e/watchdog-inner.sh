#!/bin/bash
# Scenario 6 of run.sh, run as the unprivileged user next to its own real
# `systemd --user` manager (tests/support/with-user-manager --user ...):
# a watchdog timeout of the real Paperclip stops it in order and restarts it.
#
# The unit as `paperclipd install` writes it, plus a test drop-in with
# WatchdogSec=6s and RestartSec=1s. The server's node is frozen (SIGSTOP):
# paperclipd's API probe times out, it stops feeding the watchdog, and
# systemd sends WatchdogSignal=SIGTERM to paperclipd, which forwards it to
# node. Once the unit shows Result=watchdog the test thaws node (SIGCONT),
# as a server stalled by a long blocking task would come back; node then
# handles the pending SIGTERM: its ordered shutdown stops PostgreSQL. The
# unit restarts and is ready again with new processes.
# Prints `CHECK ok|fail <what>` and `TIME <what> <ms>`; run.sh checks the
# journal (no SIGKILL, PostgreSQL stopped by Paperclip) as root afterwards.
# Needs: PCD_BIN, PCD_NODE_DIR, PCD_NPM_SHIM, PCD_DATA, PCD_PY, PCD_OUT (as
# user-manager-inner.sh).
set -u
BIN=$PCD_BIN DATA=$PCD_DATA OUT=$PCD_OUT
UNIT=paperclip@default.service
UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
failed=0
ok()   { echo "CHECK ok $*"; }
bad()  { echo "CHECK fail $*"; failed=1; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }
show() { systemctl --user show -P "$1" "$UNIT" 2>/dev/null; }
exe_of() { local e; e=$(readlink "/proc/$1/exe" 2>/dev/null) && echo "${e##*/}"; }
children_of() { pgrep -P "$1" 2>/dev/null || true; }
alive() { local s; s=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | awk '{print $1}'); [ -n "$s" ] && [ "$s" != Z ]; }
# wait_until SECONDS WHAT CMD...: poll every 20 ms.
wait_until() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$(( $(now_ms) + secs * 1000 ))
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || { bad "timed out after ${secs}s waiting for $what"; return 1; }
        sleep 0.02
    done
}
cleanup() {
    [ -n "${NODE:-}" ] && kill -CONT "$NODE" 2>/dev/null
    timeout 90 "$BIN" stop --home "$DATA" >"$OUT/stop.out" 2>&1
    timeout 60 "$BIN" uninstall --home "$DATA" >"$OUT/uninstall.out" 2>&1
    rm -rf "$UNIT_DIR/$UNIT.d"
}
trap cleanup EXIT

# Installed from the user's shell: Node 24 and the npm prefix first on PATH
# (install pins that runtime into the unit).
PATH=$PCD_NODE_DIR:${PCD_NPM_SHIM%/*}:/usr/local/bin:/usr/bin:/bin \
    timeout 60 "$BIN" install --home "$DATA" >"$OUT/install.out" 2>&1 ||
    { bad "install exited $?: $(tr '\n' ' ' <"$OUT/install.out")"; exit 1; }
grep -qx 'WatchdogSignal=SIGTERM' "$UNIT_DIR/paperclip@.service" && ok "the unit has WatchdogSignal=SIGTERM" ||
    bad "the unit lacks WatchdogSignal=SIGTERM"
mkdir -p "$UNIT_DIR/$UNIT.d"
printf '[Service]\nWatchdogSec=6s\nRestartSec=1s\n' >"$UNIT_DIR/$UNIT.d/test.conf"
systemctl --user daemon-reload

t0=$(now_ms)
timeout 240 systemctl --user start "$UNIT" || { bad "systemctl --user start exited $?"; exit 1; }
echo "TIME start $(( $(now_ms) - t0 ))"
[ "$(show WatchdogUSec)" = 6s ] && ok "WatchdogUSec=6s" || bad "WatchdogUSec=$(show WatchdogUSec) (want 6s)"
PCD1=$(show MainPID)
NODE=
for p in $(children_of "$PCD1"); do [ "$(exe_of "$p")" = node ] && NODE=$p; done
[ -n "$NODE" ] || { bad "no node child of paperclipd $PCD1"; exit 1; }
PG=$(pgrep -u "$(id -u)" -x postgres | head -1)
echo "    paperclipd $PCD1, node $NODE, postgres $PG"

# Freeze the server: the probes time out, the watchdog is no longer fed.
kill -STOP "$NODE"
t0=$(now_ms)
saw=""
watchdog_fired() {
    [ "$(show Result)" = watchdog ] && saw="$(show ActiveState)/$(show SubState)"
    [ -n "$saw" ]
}
wait_until 40 "Result=watchdog" watchdog_fired || exit 1
echo "TIME watchdog-fired $(( $(now_ms) - t0 ))"
ok "the watchdog fired (unit $saw)"
kill -CONT "$NODE"

# The restart: paperclipd exited 0 (ordered stop), then a new instance is ready.
code=""
first_exit() {
    # ExecMainCode stays 0 while the first paperclipd is still stopping
    # (deactivating); only its exit (CLD_EXITED=1, CLD_KILLED=2, …) counts,
    # read before RestartSec= (1 s) starts the next one.
    local c
    if [ "$(show Result)" = watchdog ] && [ "$(show ExecMainPID)" = "$PCD1" ]; then
        c=$(show ExecMainCode)
        [ "$c" != 0 ] && code="$c/$(show ExecMainStatus)"
    fi
    [ "$(show NRestarts)" -ge 1 ] 2>/dev/null
}
wait_until 90 "NRestarts >= 1" first_exit || exit 1
echo "    the first paperclipd ended with ExecMainCode/Status ${code:-?}"
[ "$code" = 1/0 ] && ok "paperclipd exited 0 after the watchdog's SIGTERM" ||
    bad "after the watchdog paperclipd ended with ${code:-?} (want 1/0: exited 0)"
is_active() { [ "$(show ActiveState)" = active ]; }
wait_until 180 "the restarted unit to be active" is_active || exit 1
echo "TIME restarted-ready $(( $(now_ms) - t0 ))"
PCD2=$(show MainPID)
[ "$PCD2" != "$PCD1" ] && ok "restarted: new paperclipd $PCD2" || bad "MainPID is still $PCD1"
for p in "$PCD1" "$NODE" "$PG"; do
    alive "$p" && bad "process $p of the first run is still alive"
done
ok "paperclipd $PCD1, node $NODE and postgres $PG of the first run are gone"
timeout 30 "$BIN" status --home "$DATA" --json >"$OUT/status.json" 2>/dev/null
st=$("$PCD_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$OUT/status.json" 2>/dev/null)
[ "$st" = ready ] && ok "status: ready after the restart" || bad "status: '$st' after the restart (want ready)"
exit $failed
