#!/usr/bin/env bash
# 5. `systemctl --user stop` ends the instance cleanly: inactive (not
# failed), the fixture got SIGTERM first and is gone, paperclipd exited 0.
#
# paperclipd's exit is recorded by an ExecStopPost= drop-in ($SERVICE_RESULT,
# $EXIT_CODE, $EXIT_STATUS): after a clean stop an unreferenced unit may be
# garbage-collected at once, and `systemctl show` then reports a fresh
# unit's ExecMainCode=0/ExecMainStatus=0, which proves nothing.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config t1
install_unit t1
post=$HOME/stop-post
dropin t1 "ExecStopPost=/bin/sh -c 'echo \"\$\$SERVICE_RESULT \$\$EXIT_CODE \$\$EXIT_STATUS\" >$post'"
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
fpid=$(state_file t1 pid) || fail "the fixture never ran"
pid_alive "$fpid" || fail "fixture pid $fpid is not running while the unit is active"
t_stop=$EPOCHREALTIME
systemctl --user stop paperclip@t1.service || fail "systemctl --user stop exited $?"
result "stop_seconds=$(elapsed "$t_stop")"
st=$(prop t1 ActiveState)
[[ $st == inactive ]] || fail "ActiveState=$st after stop (want inactive)"
[[ -f $post ]] || fail "ExecStopPost did not run (no $post)"
read -r svc_result exit_code exit_status <"$post"
result "service_result=$svc_result exit_code=$exit_code exit_status=$exit_status"
[[ $svc_result == success ]] || fail "SERVICE_RESULT=$svc_result after stop (want success)"
[[ $exit_code == exited && $exit_status == 0 ]] ||
  fail "paperclipd ended with EXIT_CODE=$exit_code EXIT_STATUS=$exit_status (want exited 0)"
signals=$(state_file t1 signals) || fail "the fixture received no signal"
result_text fixture_signals "$signals"
[[ $signals == SIGTERM* ]] || fail "the fixture's first signal was not SIGTERM: $signals"
[[ $(state_file t1 stopped) == 1 ]] || fail "the fixture did not stop on request (no 'stopped' file)"
pid_gone "$fpid" || fail "fixture pid $fpid is still alive after stop"
log "ok"
