#!/usr/bin/env bash
# 6. Readiness timeout: ready_timeout = "2s" and a UI that always answers 404
# -> paperclipd gives up with 69, the start job fails, the unit is failed with
# ExecMainStatus=69 and (Restart=no in a drop-in) stays failed.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

EXTRA_TOML='ready_timeout = "2s"' write_config t1 --ui-mode 404
install_unit t1
dropin t1 'Restart=no'
t_start=$EPOCHREALTIME
rc=0
systemctl --user start paperclip@t1.service 2>"$HOME/start.err" || rc=$?
took=$(elapsed "$t_start")
log "systemctl --user start exited $rc after ${took}s: $(tr '\n' ' ' <"$HOME/start.err")"
result "start_exit=$rc start_seconds=$took"
((rc != 0)) || fail "systemctl --user start succeeded although the UI never became ready"
# The job result arrives with the unit's final state; allow the stop to finish.
wait_for 10 "ActiveState=failed" prop_is t1 ActiveState failed
res=$(prop t1 Result) code=$(prop t1 ExecMainCode) status=$(prop t1 ExecMainStatus)
result "result=$res exec_main_code=$code exec_main_status=$status nrestarts=$(prop t1 NRestarts)"
[[ $res == exit-code ]] || fail "Result=$res (want exit-code)"
[[ $code == 1 && $status == 69 ]] || fail "ExecMainCode=$code ExecMainStatus=$status (want exited 69)"
[[ $(prop t1 NRestarts) == 0 ]] || fail "NRestarts=$(prop t1 NRestarts) with Restart=no"
starts=$(wc -l <"$STATE_ROOT/t1/starts")
((starts == 1)) || fail "the fixture was started $starts times"
fpid=$(state_file t1 pid)
pid_gone "$fpid" || fail "fixture pid $fpid still alive after the failed start"
log "ok"
