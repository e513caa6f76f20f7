#!/bin/bash
# Scenario 5 of run.sh, run as the unprivileged user next to its own real
# `systemd --user` manager (tests/support/with-user-manager --user ...).
# Prints `CHECK ok|fail <what>` lines and `TIME <what> <ms>`; exits 1 if any
# check failed. Needs: PCD_BIN (paperclipd), PCD_NODE_DIR (Node 24's own bin
# directory), PCD_NPM_SHIM (paperclipai as `npm install -g --prefix` made it),
# PCD_DATA (the Paperclip home), PCD_PY (python3), PCD_OUT (a writable dir).
# The machine's older /usr/bin/node stays present throughout.
set -u
BIN=$PCD_BIN DATA=$PCD_DATA PY=$PCD_PY OUT=$PCD_OUT
UNIT=paperclip@default.service
UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
NODE24=$PCD_NODE_DIR/node NPM_BIN=${PCD_NPM_SHIM%/*}
# The user's shell: Node 24 and the npm prefix first, as nvm or a prefix
# install leave PATH; the same without Node 24 finds the machine's /usr/bin/node.
SHELL_PATH=$PCD_NODE_DIR:$NPM_BIN:/usr/local/bin:/usr/bin:/bin
OLD_PATH=$NPM_BIN:/usr/local/bin:/usr/bin:/bin
LOCK=$DATA/instances/default/paperclipd.lock
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

sys_node=$(/usr/bin/node --version 2>/dev/null)
if [ -n "$sys_node" ] && [ "${sys_node%%.*}" != v24 ]; then ok "the machine's /usr/bin/node is $sys_node (older, still present)"
else bad "/usr/bin/node is '${sys_node:-missing}' (want an older Node.js present, to prove it is not used)"; fi
as_shell() { env -u PAPERCLIP_SHIM_PATH -u PAPERCLIP_NODE PATH="$1" "${@:2}"; }

# 1. install --now from the user's shell: pins its Node 24, enables, starts,
# returns after READY=1.
t0=$(now_ms)
as_shell "$SHELL_PATH" timeout 240 "$BIN" install --now --home "$DATA" >"$OUT/install.out" 2>&1
rc=$?
echo "TIME install--now $(( $(now_ms) - t0 ))"
sed 's/^/    install: /' "$OUT/install.out"
if [ $rc -eq 0 ]; then ok "install --now exited 0"; else bad "install --now exited $rc"; fi
state=$(show ActiveState)/$(show SubState)
if [ "$state" = active/running ]; then ok "unit $state right after install --now"; else bad "unit is $state right after install --now (want active/running)"; fi

f=$UNIT_DIR/paperclip@.service
dropin=$UNIT_DIR/paperclip@default.service.d/paperclipd.conf
if [ -f "$f" ] && [ -f "$dropin" ]; then
    # The instance's settings are in its own drop-in; the shared template
    # holds none of them (issue 19 item 1).
    grep -qxF "Environment=PAPERCLIP_HOME=$DATA" "$dropin" && ok "drop-in records PAPERCLIP_HOME" || bad "drop-in lacks Environment=PAPERCLIP_HOME=$DATA"
    grep -qxF "Environment=PAPERCLIP_SHIM_PATH=$PCD_NPM_SHIM" "$dropin" && ok "drop-in records PAPERCLIP_SHIM_PATH (the npm shim)" || bad "drop-in lacks Environment=PAPERCLIP_SHIM_PATH=$PCD_NPM_SHIM"
    grep -qxF "Environment=PAPERCLIP_NODE=$NODE24" "$dropin" && ok "drop-in pins PAPERCLIP_NODE=$NODE24" || bad "drop-in lacks Environment=PAPERCLIP_NODE=$NODE24"
    grep -qxF "Environment=PAPERCLIPD_PATH_PREPEND=$PCD_NODE_DIR:$NPM_BIN:$HOME/.local/bin" "$dropin" &&
        ok "drop-in puts Node 24's and the shim's directories before the manager's PATH" || bad "drop-in PATH prepend is not pinned: $(grep '^Environment=PAPERCLIPD_PATH_PREPEND' "$dropin" | tr '\n' ' ')"
    grep -qE '^Environment=(PAPERCLIP_HOME|PAPERCLIP_NODE|PAPERCLIP_SHIM_PATH|PATH)=' "$f" && bad "the shared template carries an instance's settings" || ok "the shared template carries no instance's settings"
    # No NoNewPrivileges= in the user unit: it would break sudo, newuidmap,
    # fusermount and Chromium's sandbox for the agents.
    grep -q '^NoNewPrivileges=' "$f" && bad "the user unit sets NoNewPrivileges= (breaks agents' setuid tools)" || ok "no NoNewPrivileges= in the user unit"
    grep -qx 'WatchdogSignal=SIGTERM' "$f" && ok "unit has WatchdogSignal=SIGTERM" || bad "unit lacks WatchdogSignal=SIGTERM"
    grep -qx 'Type=notify' "$f" && ok "unit is Type=notify" || bad "unit is not Type=notify"
else
    bad "no unit file at $f or no drop-in at $dropin"
fi
[ -L "$UNIT_DIR/default.target.wants/$UNIT" ] && ok "enabled (default.target.wants link)" || bad "no $UNIT_DIR/default.target.wants/$UNIT link"

# 2. status --json: ready, and the manager says active.
t0=$(now_ms)
as_shell "$SHELL_PATH" timeout 30 "$BIN" status --home "$DATA" --json >"$OUT/status.json" 2>"$OUT/status.err"
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
grep -q 'runtime: Node.js v24' "$OUT/install.out" && ok "install showed the pinned runtime" || bad "install did not show the runtime"
child=$(json_get "$LOCK" child_pid) exe=$(readlink "/proc/$child/exe" 2>/dev/null)
if [ -n "$exe" ] && [ "$exe" = "$(readlink -f "$NODE24")" ]; then ok "the server process $child is Node 24: /proc/$child/exe -> $exe"
else bad "the server process '$child' runs '$exe' (want $(readlink -f "$NODE24"))"; fi
rt_node=$(json_get "$OUT/status.json" runtime.service.node) rt_warn=$(json_get "$OUT/status.json" runtime.warnings)
[ "$rt_node" = "$NODE24" ] && [ "$rt_warn" = "[]" ] && ok "status shows the service's runtime $rt_node, no warning" ||
    bad "status runtime: service node '$rt_node', warnings $rt_warn (want $NODE24, [])"

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

# 5. Too old at install: the shell's node is the machine's /usr/bin/node.
as_shell "$OLD_PATH" timeout 60 "$BIN" install --home "$DATA" >"$OUT/install-old.out" 2>&1
rc=$?
sed 's/^/    install (old node): /' "$OUT/install-old.out"
if [ $rc -eq 78 ] && grep -q "Node.js $sys_node (/usr/bin/node" "$OUT/install-old.out" && grep -q -- '--node' "$OUT/install-old.out"; then
    ok "install with /usr/bin/node $sys_node first: exit 78 naming it and --node"
else bad "install with an old node exited $rc (want 78 naming /usr/bin/node and --node)"; fi
[ ! -e "$f" ] && ok "the refused install wrote no unit" || bad "the refused install wrote $f"

# 6. Too old at run, under the manager: the user's node alias moves back to
# the older node after install. The unit exits 78 and is not restarted.
ALIAS=$HOME/e2e-node/bin
mkdir -p "$ALIAS" && ln -sfn "$NODE24" "$ALIAS/node"
as_shell "$ALIAS:$NPM_BIN:/usr/local/bin:/usr/bin:/bin" timeout 60 "$BIN" install --home "$DATA" >"$OUT/install-alias.out" 2>&1 ||
    bad "install through the alias exited $?: $(tr '\n' ' ' <"$OUT/install-alias.out")"
ln -sfn /usr/bin/node "$ALIAS/node"
t0=$(now_ms)
timeout 90 "$BIN" start --home "$DATA" >"$OUT/start-old.out" 2>&1
rc=$?
echo "TIME start-with-old-node $(( $(now_ms) - t0 ))"
sed 's/^/    start (old node): /' "$OUT/start-old.out"
st=$(show ActiveState)/$(show ExecMainStatus)
[ $rc -ne 0 ] && [ "$st" = failed/78 ] && ok "start with the pinned node now $sys_node: fails, unit failed/78" || bad "start exited $rc, unit $st (want non-zero, failed/78)"
# No restart loop: watch for longer than RestartSec=5 (the restart would
# come then); fail at once if one comes or a server process appears.
t0=$(now_ms) seen=
while [ $(( $(now_ms) - t0 )) -lt 8000 ]; do
    n=$(show NRestarts) a=$(show ActiveState)
    if [ "$n" != 0 ] || [ "$a" != failed ] || [ -n "$(server_procs)" ]; then seen="NRestarts=$n ActiveState=$a procs=$(server_procs | tr '\n' ' ')"; break; fi
    sleep 0.1
done
[ -z "$seen" ] && ok "no restart within 8 s (RestartSec=5): NRestarts 0, still failed, no node started" || bad "restarted: $seen"
as_shell "$SHELL_PATH" timeout 30 "$BIN" status --home "$DATA" --json >"$OUT/status-old.json" 2>/dev/null
w=$(json_get "$OUT/status-old.json" runtime.warnings)
[[ $w == *"your shell runs Node.js v24"* && $w == *"$sys_node"* ]] && ok "status warns: the service's $sys_node differs from the shell's v24" || bad "status warnings: $w"
as_shell "$OLD_PATH" timeout 60 "$BIN" run --home "$DATA" </dev/null >"$OUT/run-old.out" 2>&1
rc=$?
grep -q "Node.js $sys_node" "$OUT/run-old.out" && [ $rc -eq 78 ] && ok "run with $sys_node first in PATH: exit 78 naming it" || bad "run with an old node exited $rc: $(tr '\n' ' ' <"$OUT/run-old.out" | cut -c1-300)"

# 7. The pinned node disappears (a Node.js upgrade removed it): status says so.
rm -f "$ALIAS/node"
as_shell "$SHELL_PATH" timeout 30 "$BIN" status --home "$DATA" >"$OUT/status-gone.out" 2>/dev/null
grep -q 'pinned runtime no longer exists' "$OUT/status-gone.out" && ok "status: the pinned runtime no longer exists" ||
    bad "status does not say the pinned runtime is gone: $(tr '\n' ' ' <"$OUT/status-gone.out")"
systemctl --user reset-failed "$UNIT" 2>/dev/null
timeout 90 "$BIN" start --home "$DATA" >/dev/null 2>&1
st=$(show ActiveState)/$(show ExecMainStatus)/$(show NRestarts)
[ "$st" = failed/78/0 ] && ok "start with the pinned node gone: failed/78, no restart" || bad "start with the pinned node gone: unit $st (want failed/78/0)"
timeout 60 "$BIN" uninstall --home "$DATA" >/dev/null 2>&1 || bad "the second uninstall exited $?"
rm -rf "$HOME/e2e-node"

exit $failed
