#!/usr/bin/env bash
# 1. `systemctl --user start paperclip@t1` (after `paperclipd install`
# without --now) returns only once the fixture is ready: listening after 1 s,
# API "ok" after 2 s, so the start takes >= 2 s, and when systemctl returns
# the unit is active, the fixture's ready moment has passed and StatusText
# says "ready".
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config t1 --listen-after 1 --api-ok-after 2
install_unit t1

t_start=$EPOCHREALTIME
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
t_done=$EPOCHREALTIME
took=$(elapsed "$t_start" "$t_done")
log "systemctl --user start returned after ${took}s"
result "start_seconds=$took"

active=$(prop t1 ActiveState)
[[ $active == active ]] || fail "ActiveState=$active right after systemctl start returned (want active)"
sub=$(prop t1 SubState)
[[ $sub == running ]] || fail "SubState=$sub (want running)"
ready_at=$(state_file t1 ready_at) || fail "the fixture never ran (no ready_at)"
(($(us "$ready_at") <= $(us "$t_done"))) ||
  fail "systemctl start returned $(elapsed "$t_done" "$ready_at")s BEFORE the fixture was ready"
result "ready_to_return_seconds=$(elapsed "$ready_at" "$t_done")"
(($(us "$t_done") - $(us "$t_start") >= 1900000)) ||
  fail "start took only ${took}s; the fixture cannot be ready before ~2s"
status=$(prop t1 StatusText)
[[ $status == *ready* ]] || fail "StatusText='$status' does not say ready"
result_text status_text "$status"
main_pid=$(prop t1 MainPID)
[[ $(tr -d '\n' <"/proc/$main_pid/comm" 2>/dev/null) != python3 ]] || fail "MainPID $main_pid is the server, not paperclipd"
log "ok"
