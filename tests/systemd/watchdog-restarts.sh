#!/usr/bin/env bash
# 4. Watchdog: with WatchdogSec=2s, a server whose /api/health starts failing
# (503 after 3 s) stops being vouched for; systemd's watchdog fires and
# Restart=on-failure starts it again (NRestarts >= 1) within ~20 s. The
# watchdog's signal (WatchdogSignal=SIGTERM) is an ordered stop: paperclipd
# exits 0 after sending SIGTERM to the server, which shuts down on its own
# terms (no core dump, no SIGKILL of the server's group).
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config t1 --health-fail-after 3
install_unit t1
dropin t1 $'WatchdogSec=2s\nRestartSec=3s'
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
# (WatchdogUSec reads "infinity" until the unit starts: check it now.)
[[ $(prop t1 WatchdogUSec) == 2s ]] || fail "the drop-in did not apply: WatchdogUSec=$(prop t1 WatchdogUSec)"
pid1=$(prop t1 MainPID)
t_ready=$EPOCHREALTIME
log "active with MainPID $pid1"
# Between paperclipd's exit and the restart (RestartSec=3s) the unit waits
# in SubState=auto-restart with Result=watchdog and paperclipd's exit in
# ExecMainCode/Status; the restart resets them. (The user manager's own
# "Watchdog timeout" message does not reach the harness's journal, so the
# properties are the evidence.) One `show` call reads them together: while
# the stop still runs, Result is already watchdog but the exit is not known.
saw_watchdog=no
after_watchdog() {
  local snap
  snap=$(systemctl --user show -p Result -p SubState -p ExecMainCode -p ExecMainStatus -p NRestarts paperclip@t1.service)
  if [[ $snap == *$'Result=watchdog'* && $snap == *$'SubState=auto-restart'* ]]; then
    saw_watchdog=yes
    killed="$(sed -n 's/^ExecMainCode=//p' <<<"$snap")/$(sed -n 's/^ExecMainStatus=//p' <<<"$snap")"
    return 0
  fi
  [[ $(sed -n 's/^NRestarts=//p' <<<"$snap") =~ ^[1-9] ]] && return 0
  return 1
}
wait_for 20 "the watchdog's stop to end (auto-restart)" after_watchdog
[[ $saw_watchdog == yes ]] || fail "the unit restarted without showing Result=watchdog in auto-restart (restarted for another reason, or the 3 s window was missed)"
wait_for 10 "NRestarts >= 1" prop_ge t1 NRestarts 1
log "restarted: NRestarts=$(prop t1 NRestarts), Result=watchdog seen: $saw_watchdog (ExecMainCode/Status ${killed:-?})"
result "restart_after_seconds=$(elapsed "$t_ready") saw_result_watchdog=$saw_watchdog"
# exited(1)/0: paperclipd stopped in order; dumped(3)/6 would be SIGABRT's core dump.
[[ ${killed:-} == 1/0 ]] || fail "after the watchdog timeout paperclipd ended with ExecMainCode/Status ${killed:-?}, want 1/0 (exited 0)"
first_signal=$(state_file t1 signals | head -1)
[[ $first_signal == SIGTERM* ]] || fail "the first server got '${first_signal:-no signal}', want SIGTERM"
grep -q '^1' "$STATE_ROOT/t1/stopped" 2>/dev/null || fail "the first server did not shut down on its own terms (no 'stopped' record)"
# The restarted instance comes up again (its health fails again 3 s later).
wait_for 10 "the restarted instance to be active" prop_is t1 ActiveState active
pid2=$(prop t1 MainPID)
[[ $pid2 != "$pid1" ]] || fail "MainPID is still $pid1 after a restart"
pid_gone "$pid1" || fail "the old paperclipd $pid1 is still alive"
starts=$(wc -l <"$STATE_ROOT/t1/starts")
first_fixture=$(head -1 "$STATE_ROOT/t1/starts")
pid_gone "$first_fixture" || fail "the first fixture $first_fixture is still alive after the watchdog restart"
result "nrestarts=$(prop t1 NRestarts) fixture_starts=$starts"
((starts >= 2)) || fail "the fixture was started $starts times (want >= 2)"
log "ok"
