#!/usr/bin/env bash
# 7. The paperclipd CLI drives the user manager end to end:
#   install --dry-run writes nothing; install --now returns once ready;
#   status --json reports ready/active/main_pid (exit 0); stop -> status
#   exit 3; start, restart (in place) and restart --full return ready;
#   uninstall disables the instance
#   and removes the template (no instance left enabled).
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config t2 --listen-after 0.5 --api-ok-after 1

# --dry-run prints the unit and writes/enables nothing.
"$PAPERCLIPD" install --dry-run -i t2 >"$HOME/dry.out" || fail "install --dry-run exited $?"
grep -q 'Type=notify' "$HOME/dry.out" || fail "install --dry-run did not print the unit: $(cat "$HOME/dry.out")"
[[ ! -e $TEMPLATE ]] || fail "install --dry-run wrote $TEMPLATE"
if systemctl --user is-enabled paperclip@t2.service >/dev/null 2>&1; then fail "install --dry-run enabled the unit"; fi

# install --now: enabled, started, and ready when it returns.
t_start=$EPOCHREALTIME
"$PAPERCLIPD" install --now -i t2 2>"$HOME/install.err" ||
  fail "paperclipd install --now -i t2 exited $?: $(cat "$HOME/install.err")"
t_done=$EPOCHREALTIME
result "install_now_seconds=$(elapsed "$t_start" "$t_done")"
[[ -f $TEMPLATE ]] || fail "install --now did not write $TEMPLATE"
systemctl --user is-enabled paperclip@t2.service >/dev/null || fail "install --now did not enable paperclip@t2.service"
# Enabled as `systemctl enable` does it: the manager reloaded AFTER the
# symlink was made, so default.target wants the instance now (otherwise the
# unit is unreferenced and garbage-collected after each clean stop, losing
# its last Result/ExecMainStatus, until the next daemon-reload).
wants=$(systemctl --user show -P Wants default.target)
[[ " $wants " == *" paperclip@t2.service "* ]] ||
  fail "after install, default.target does not want paperclip@t2.service (Wants=$wants): no Reload after EnableUnitFiles?"
prop_is t2 ActiveState active || fail "ActiveState=$(prop t2 ActiveState) right after install --now returned"
# A user unit's install checks logind's RemoveIPC against linger (root: a
# system user, never touched).
grep -q 'logind: protected: root (uid 0) is a system user' "$HOME/install.err" ||
  fail "install --now did not report logind's IPC protection: $(cat "$HOME/install.err")"
ready_at=$(state_file t2 ready_at) || fail "the fixture never ran"
(($(us "$ready_at") <= $(us "$t_done"))) || fail "install --now returned before the fixture was ready"

# status_json FIELD... — run `paperclipd status -i t2 --json`; sets $st_rc
# (its exit code) and the array f (the FIELDs, dotted paths; "null" when absent).
status_json() {
  st_rc=0
  "$PAPERCLIPD" status -i t2 --json >"$HOME/status.json" 2>"$HOME/status.err" || st_rc=$?
  "$PYTHON3" - "$HOME/status.json" "$@" >"$HOME/status.fields" <<'PY' ||
import json, sys
doc = json.load(open(sys.argv[1]))
for path in sys.argv[2:]:
    v = doc
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    print("null" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else v)
PY
    fail "status --json (exit $st_rc) printed no valid JSON: $(cat "$HOME/status.json" "$HOME/status.err")"
  mapfile -t f <"$HOME/status.fields"
}
status_json instance state manager.kind manager.unit manager.active_state manager.main_pid lock lock.pid
log "status (exit $st_rc): $(tr '\n' ' ' <"$HOME/status.json")"
result "status_ready_exit=$st_rc state=${f[1]} active_state=${f[4]} main_pid=${f[5]}"
((st_rc == 0)) || fail "status of a ready instance exited $st_rc (want 0)"
[[ ${f[0]} == t2 ]] || fail "status: instance=${f[0]}"
[[ ${f[1]} == ready ]] || fail "status: state=${f[1]} (want ready)"
[[ ${f[2]} == systemd ]] || fail "status: manager.kind=${f[2]} (want systemd)"
[[ ${f[3]} == paperclip@t2.service ]] || fail "status: manager.unit=${f[3]}"
[[ ${f[4]} == active ]] || fail "status: manager.active_state=${f[4]} (want active)"
if ! [[ ${f[5]} =~ ^[0-9]+$ ]] || ((f[5] <= 0)); then fail "status: manager.main_pid=${f[5]}"; fi
[[ ${f[5]} == "$(prop t2 MainPID)" ]] || fail "status: main_pid ${f[5]} != systemd's MainPID $(prop t2 MainPID)"
# `lock` is the holder: a pid, or an object with its pid (and the record).
holder=${f[6]}
[[ $holder =~ ^[0-9]+$ ]] || holder=${f[7]}
[[ $holder == "${f[5]}" ]] || fail "status: the lock holder (lock=${f[6]}) is not the unit's MainPID ${f[5]}"

# stop -> stopped (exit 3).
"$PAPERCLIPD" stop -i t2 || fail "paperclipd stop -i t2 exited $?"
prop_is t2 ActiveState inactive || fail "ActiveState=$(prop t2 ActiveState) after paperclipd stop"
status_json state manager.active_state lock
result "status_stopped_exit=$st_rc state=${f[0]}"
((st_rc == 3)) || fail "status of a stopped instance exited $st_rc (want 3): $(cat "$HOME/status.json")"
[[ ${f[0]} == stopped ]] || fail "status: state=${f[0]} (want stopped)"
[[ ${f[2]} == null ]] || fail "status: lock=${f[2]} while stopped (want null)"

# start and restart return only when ready. restart of a running instance
# is in place (a hot restart: paperclipd, MainPID, stays; the server is
# replaced); restart --full replaces the process.
"$PAPERCLIPD" start -i t2 || fail "paperclipd start -i t2 exited $?"
prop_is t2 ActiveState active || fail "ActiveState=$(prop t2 ActiveState) after paperclipd start returned"
pid_a=$(prop t2 MainPID)
server_a=$(state_file t2 pid)
"$PAPERCLIPD" restart -i t2 || fail "paperclipd restart -i t2 exited $?"
prop_is t2 ActiveState active || fail "ActiveState=$(prop t2 ActiveState) after paperclipd restart returned"
pid_b=$(prop t2 MainPID)
[[ $pid_a == "$pid_b" ]] || fail "restart (in place) replaced MainPID $pid_a with $pid_b"
[[ $(state_file t2 pid) != "$server_a" ]] || fail "restart did not replace the server $server_a"
"$PAPERCLIPD" restart --full -i t2 || fail "paperclipd restart --full -i t2 exited $?"
prop_is t2 ActiveState active || fail "ActiveState=$(prop t2 ActiveState) after paperclipd restart --full returned"
pid_c=$(prop t2 MainPID)
[[ $pid_b != "$pid_c" ]] || fail "restart --full kept MainPID $pid_b"
status_json state
((st_rc == 0)) || fail "status after restart exited $st_rc: $(cat "$HOME/status.json")"
starts=$(wc -l <"$STATE_ROOT/t2/starts")
result "fixture_starts=$starts"
((starts == 4)) || fail "the fixture was started $starts times (want 4: install --now, start, restart, restart --full)"

# uninstall: stopped, disabled, template gone (no instance left enabled).
fpid=$(state_file t2 pid)
"$PAPERCLIPD" uninstall -i t2 || fail "paperclipd uninstall -i t2 exited $?"
if en=$(systemctl --user is-enabled paperclip@t2.service 2>&1); then fail "still enabled after uninstall: $en"; fi
[[ ! -e $TEMPLATE ]] || fail "uninstall left $TEMPLATE"
st=$(prop t2 ActiveState)
[[ $st == inactive ]] || fail "ActiveState=$st after uninstall (want inactive)"
pid_gone "$fpid" || fail "the fixture $fpid survived uninstall"
st_rc=0
"$PAPERCLIPD" status -i t2 >/dev/null 2>&1 || st_rc=$?
result "status_uninstalled_exit=$st_rc" # informational: not specified
log "ok"
