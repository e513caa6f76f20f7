#!/usr/bin/env bash
# Issue 19 item 4: a server that exits 0 on its own after it was ready (no
# stop requested) is a failure for a service: paperclipd exits 70, which
# Restart=on-failure acts on (exit 0 it ignores) and RestartPreventExitStatus
# does not list. The unit restarts (NRestarts >= 1) and the journal says why.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

# Ready at once; exits 0 on its own 4 s after it started.
write_config t1 --exit-after 4
install_unit t1
dropin t1 'RestartSec=1s'
t_start=$EPOCHREALTIME
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $? (the fixture should be ready well before it exits at 4 s)"
pid1=$(prop t1 MainPID)
log "active (ready) with MainPID $pid1 after $(elapsed "$t_start")s"
# Between paperclipd's exit and the restart the unit sits in auto-restart
# with paperclipd's exit status in ExecMainStatus; with exit 0 it would go
# inactive (Result=success) and stay there.
seen_status=''
restarted_or_seen() {
  local snap
  snap=$(systemctl --user show -p SubState -p ExecMainStatus -p NRestarts -p ActiveState paperclip@t1.service)
  if [[ $snap == *$'SubState=auto-restart'* ]]; then
    seen_status=$(sed -n 's/^ExecMainStatus=//p' <<<"$snap")
  fi
  [[ $(sed -n 's/^NRestarts=//p' <<<"$snap") =~ ^[1-9] ]] && return 0
  # Exit 0 after ready: inactive for good; no point waiting out the deadline.
  if [[ $snap == *$'ActiveState=inactive'* ]]; then
    fail "the unit went inactive after the server exited 0 on its own ($(prop t1 Result), ExecMainStatus=$(prop t1 ExecMainStatus)): never restarted"
  fi
  return 1
}
wait_for 30 "NRestarts >= 1" restarted_or_seen
exit1=${seen_status:-$(journalctl --user-unit paperclip@t1.service --no-pager -o cat | sed -n 's/.*exited, code=exited, status=\([0-9]*\).*/\1/p' | head -1)}
log "restarted: NRestarts=$(prop t1 NRestarts), first paperclipd exited ${exit1:-?}"
result "nrestarts=$(prop t1 NRestarts) first_exit=${exit1:-unknown}"
wait_for 10 "the restarted instance to be active" prop_is t1 ActiveState active
why=$(journalctl --user-unit paperclip@t1.service --no-pager -o cat | grep -m1 'after it was ready' || true)
result_text why "$why"
[[ -n $why ]] || fail "the journal does not say why paperclipd exited non-zero after the server's exit 0"
pid_gone "$pid1" || fail "the first paperclipd $pid1 is still alive"
log "ok"
