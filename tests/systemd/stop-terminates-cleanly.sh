#!/usr/bin/env bash
# 5. `systemctl --user stop` ends the instance cleanly: inactive (not
# failed), the fixture got SIGTERM first and is gone, paperclipd exited 0.
source "$(dirname "$0")/lib.sh"

write_config t1
install_unit t1
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
fpid=$(state_file t1 pid) || fail "the fixture never ran"
pid_alive "$fpid" || fail "fixture pid $fpid is not running while the unit is active"
t_stop=$EPOCHREALTIME
systemctl --user stop paperclip@t1.service || fail "systemctl --user stop exited $?"
result "stop_seconds=$(elapsed "$t_stop")"
st=$(prop t1 ActiveState)
[[ $st == inactive ]] || fail "ActiveState=$st after stop (want inactive)"
res=$(prop t1 Result)
[[ $res == success ]] || fail "Result=$res after stop (want success)"
code=$(prop t1 ExecMainCode) status=$(prop t1 ExecMainStatus)
result "exec_main_code=$code exec_main_status=$status"
[[ $code == 1 && $status == 0 ]] || fail "paperclipd ended with ExecMainCode=$code ExecMainStatus=$status (want exited 0)"
signals=$(state_file t1 signals) || fail "the fixture received no signal"
result "fixture_signals=$(tr '\n' ' ' <<<"$signals")"
[[ $signals == SIGTERM* ]] || fail "the fixture's first signal was not SIGTERM: $signals"
[[ $(state_file t1 stopped) == 1 ]] || fail "the fixture did not stop on request (no 'stopped' file)"
pid_gone "$fpid" || fail "fixture pid $fpid is still alive after stop"
log "ok"
