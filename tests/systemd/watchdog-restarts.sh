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
dropin t1 $'WatchdogSec=2s\nRestartSec=1s'
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
# (WatchdogUSec reads "infinity" until the unit starts: check it now.)
[[ $(prop t1 WatchdogUSec) == 2s ]] || fail "the drop-in did not apply: WatchdogUSec=$(prop t1 WatchdogUSec)"
pid1=$(prop t1 MainPID)
t_ready=$EPOCHREALTIME
log "active with MainPID $pid1"
# Between the watchdog kill and the restart (RestartSec=1s) the unit shows
# Result=watchdog; the restart resets it to success. (The user manager's own
# "Watchdog timeout" message does not reach the harness's journal, so the
# properties are the evidence.)
saw_watchdog=no
seen_watchdog() {
  local r
  r=$(systemctl --user show -P Result paperclip@t1.service)
  if [[ $r == watchdog ]]; then
    saw_watchdog=yes
    killed="$(prop t1 ExecMainCode)/$(prop t1 ExecMainStatus)"
  fi
  prop_ge t1 NRestarts 1
}
wait_for 20 "NRestarts >= 1" seen_watchdog
log "restarted: NRestarts=$(prop t1 NRestarts), Result=watchdog seen: $saw_watchdog (ExecMainCode/Status ${killed:-?})"
result "restart_after_seconds=$(elapsed "$t_ready") saw_result_watchdog=$saw_watchdog"
[[ $saw_watchdog == yes ]] || fail "the unit restarted, but never showed Result=watchdog: restarted for another reason"
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
