#!/usr/bin/env bash
# 11. Without a reachable D-Bus user bus, lifecycle commands say so and fall
# back to systemctl (the manager's private socket): install --now, status,
# stop and uninstall still work, and start still returns only once ready.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

export DBUS_SESSION_BUS_ADDRESS=unix:path=$HOME/no-such-bus
write_config n1 --listen-after 0.5 --api-ok-after 1
"$PAPERCLIPD" install -i n1 --now 2>"$HOME/install.err" || fail "install --now without a bus exited $?: $(cat "$HOME/install.err")"
grep -q 'falling back to `systemctl --user`' "$HOME/install.err" || fail "install did not say it fell back: $(cat "$HOME/install.err")"
prop_is n1 ActiveState active || fail "the unit is $(prop n1 ActiveState) after install --now"
[[ -n $(state_file n1 ready_at) ]] || fail "the fixture never started"
rc=0
"$PAPERCLIPD" status -i n1 >"$HOME/status.txt" 2>/dev/null || rc=$?
result "status_exit=$rc"
((rc == 0)) || fail "status exited $rc without a bus: $(cat "$HOME/status.txt")"
"$PAPERCLIPD" stop -i n1 2>/dev/null || fail "stop without a bus exited $?"
prop_is n1 ActiveState inactive || fail "the unit is $(prop n1 ActiveState) after stop"
"$PAPERCLIPD" uninstall -i n1 2>/dev/null || fail "uninstall without a bus exited $?"
[[ ! -e $TEMPLATE ]] || fail "uninstall left $TEMPLATE"
log "ok"
