#!/bin/bash
# Scenario 5 of run.sh, run as the unprivileged user next to its own real
# `systemd --user` manager (tests/support/with-user-manager --user ...).
# Prints `CHECK ok|fail <what>` lines and `TIME <what> <ms>`; exits 1 if any
# check failed. Needs: PCD_BIN (paperclipd), PCD_SHIM (paperclipai wrapper),
# PCD_DATA (the Paperclip home), PCD_PY (python3), PCD_OUT (a writable dir).
set -u
BIN=$PCD_BIN DATA=$PCD_DATA PY=$PCD_PY OUT=$PCD_OUT
UNIT=paperclip@default.service
UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
failed=0
ok()   { echo "CHECK ok $*"; }
bad()  { echo "CHECK fail $*"; failed=1; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }
show() { systemctl --user show -P "$1" "$UNIT" 2>/dev/null; }
json_get() { # json_get FILE KEY.PATH
    "$PY" -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=(v or {}).get(k)
print(v)' "$1" "$2" 2>/dev/null
}
server_procs() { # node and postgres processes (node's comm is "MainThread": look at the executable)
    local p e
    for p in $(pgrep -u "$(id -u)" || true); do
        e=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        case ${e##*/} in node | postgres) echo "$p:${e##*/}" ;; esac
    done
}
# (The journal is checked by run.sh as root afterwards: a system user --
# uid < 1000 -- cannot read its own lines, journald keeps them in system.journal.)

echo "manager up in ${WUM_STARTUP_MS:-?} ms (pid ${WUM_MANAGER_PID:-?}), HOME=$HOME"

# 1. install --now: writes the unit, enables, starts, returns after READY=1.
t0=$(now_ms)
PAPERCLIP_SHIM_PATH=$PCD_SHIM timeout 240 "$BIN" install --now --home "$DATA" >"$OUT/install.out" 2>&1
rc=$?
echo "TIME install--now $(( $(now_ms) - t0 ))"
sed 's/^/    install: /' "$OUT/install.out"
if [ $rc -eq 0 ]; then ok "install --now exited 0"; else bad "install --now exited $rc"; fi
state=$(show ActiveState)/$(show SubState)
if [ "$state" = active/running ]; then ok "unit $state right after install --now"; else bad "unit is $state right after install --now (want active/running)"; fi

f=$UNIT_DIR/paperclip@.service
if [ -f "$f" ]; then
    grep -qxF "Environment=PAPERCLIP_HOME=$DATA" "$f" && ok "unit records PAPERCLIP_HOME" || bad "unit lacks Environment=PAPERCLIP_HOME=$DATA"
    grep -qxF "Environment=PAPERCLIP_SHIM_PATH=$PCD_SHIM" "$f" && ok "unit records PAPERCLIP_SHIM_PATH" || bad "unit lacks Environment=PAPERCLIP_SHIM_PATH=$PCD_SHIM"
    # No NoNewPrivileges= in the user unit: it would break sudo, newuidmap,
    # fusermount and Chromium's sandbox for the agents.
    grep -q '^NoNewPrivileges=' "$f" && bad "the user unit sets NoNewPrivileges= (breaks agents' setuid tools)" || ok "no NoNewPrivileges= in the user unit"
    grep -qx 'WatchdogSignal=SIGTERM' "$f" && ok "unit has WatchdogSignal=SIGTERM" || bad "unit lacks WatchdogSignal=SIGTERM"
    grep -qx 'Type=notify' "$f" && ok "unit is Type=notify" || bad "unit is not Type=notify"
else
    bad "no unit file at $f"
fi
[ -L "$UNIT_DIR/default.target.wants/$UNIT" ] && ok "enabled (default.target.wants link)" || bad "no $UNIT_DIR/default.target.wants/$UNIT link"

# 2. status --json: ready, and the manager says active.
t0=$(now_ms)
timeout 30 "$BIN" status --home "$DATA" --json >"$OUT/status.json" 2>"$OUT/status.err"
rc=$?
echo "TIME status $(( $(now_ms) - t0 ))"
st=$(json_get "$OUT/status.json" state) as=$(json_get "$OUT/status.json" manager.active_state)
kind=$(json_get "$OUT/status.json" manager.kind)
if [ $rc -eq 0 ] && [ "$st" = ready ] && [ "$as" = active ]; then
    ok "status --json: exit 0, state ready, manager.active_state active (kind $kind)"
else
    bad "status --json: exit $rc, state '$st', manager.active_state '$as' (want 0, ready, active)"
    sed 's/^/    status: /' "$OUT/status.json" "$OUT/status.err"
fi
mainpid=$(show MainPID)
echo "    unit MainPID $mainpid ($(cat /proc/"$mainpid"/comm 2>/dev/null)), NRestarts $(show NRestarts), StatusText: $(show StatusText)"
[ -n "$(server_procs)" ] && ok "node and postgres run under the unit" || bad "no node/postgres process while the unit is active"

# 3. stop: inactive (not failed), no server process left.
t0=$(now_ms)
timeout 90 "$BIN" stop --home "$DATA" >"$OUT/stop.out" 2>&1
rc=$?
echo "TIME stop $(( $(now_ms) - t0 ))"
sed 's/^/    stop: /' "$OUT/stop.out"
[ $rc -eq 0 ] && ok "stop exited 0" || bad "stop exited $rc"
state=$(show ActiveState)/$(show Result)
[ "$state" = inactive/success ] && ok "unit inactive/success after stop" || { bad "unit is $state after stop (want inactive/success)"; }
left=$(server_procs)
[ -z "$left" ] && ok "no node/postgres left after stop" || bad "left after stop: $(echo $left)"

# 4. uninstall: disabled, template removed.
t0=$(now_ms)
timeout 60 "$BIN" uninstall --home "$DATA" >"$OUT/uninstall.out" 2>&1
rc=$?
echo "TIME uninstall $(( $(now_ms) - t0 ))"
sed 's/^/    uninstall: /' "$OUT/uninstall.out"
[ $rc -eq 0 ] && ok "uninstall exited 0" || bad "uninstall exited $rc"
rest=$(find "$UNIT_DIR" -name 'paperclip@*' 2>/dev/null)
[ -z "$rest" ] && ok "unit dir cleaned ($UNIT_DIR)" || bad "left in the unit dir: $(echo $rest)"
# The manager must forget the unit (uninstall reloads it). Seen once: still
# "loaded" right after uninstall; give it 2 s and say what it showed.
t0=$(now_ms) seen=""
while :; do
    load=$(show LoadState)
    [ "$load" = not-found ] && break
    [[ $seen == *"$load"* ]] || seen+="$load@$(( $(now_ms) - t0 ))ms($(systemctl --user show -P FragmentPath,NeedDaemonReload,ActiveState,UnitFileState "$UNIT" 2>/dev/null | tr '\n' ',')) "
    [ $(( $(now_ms) - t0 )) -lt 2000 ] || break
    sleep 0.02
done
if [ "$load" = not-found ] && [ -z "$seen" ]; then
    ok "manager no longer knows $UNIT"
elif [ "$load" = not-found ]; then
    ok "manager no longer knows $UNIT after $(( $(now_ms) - t0 )) ms (first: $seen)"
else
    bad "$UNIT LoadState is still '$load' 2 s after uninstall (want not-found): $seen"
fi

exit $failed
