#!/usr/bin/env bash
# Issue 19 item 7. Neither XDG_RUNTIME_DIR nor a reachable bus (as after
# `sudo -u alice` or `su alice`): the systemctl fallback finds the user
# manager at /run/user/$UID, and start/stop still work.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $XDG_RUNTIME_DIR == /run/user/$(id -u) ]] || fail "the harness's runtime dir is $XDG_RUNTIME_DIR, not /run/user/$(id -u)"
write_config r1 --listen-after 0.2 --api-ok-after 0.4
install_unit r1
rc=0
env -u XDG_RUNTIME_DIR DBUS_SESSION_BUS_ADDRESS="unix:path=$HOME/no-such-bus" \
  "$PAPERCLIPD" start -i r1 2>"$HOME/start.err" || rc=$?
result "start_exit=$rc"
((rc == 0)) || fail "start without XDG_RUNTIME_DIR exited $rc: $(cat "$HOME/start.err")"
prop_is r1 ActiveState active || fail "the unit is $(prop r1 ActiveState)"
env -u XDG_RUNTIME_DIR DBUS_SESSION_BUS_ADDRESS="unix:path=$HOME/no-such-bus" \
  "$PAPERCLIPD" stop -i r1 2>/dev/null || fail "stop without XDG_RUNTIME_DIR exited $?"
prop_is r1 ActiveState inactive || fail "the unit is $(prop r1 ActiveState) after stop"
log "ok"
