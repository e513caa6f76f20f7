#!/usr/bin/env bash
# 2. A second `systemctl --user start` of an active instance does nothing:
# same MainPID, and the fixture was started exactly once.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config t1
install_unit t1
systemctl --user start paperclip@t1.service || fail "first systemctl --user start exited $?"
pid1=$(prop t1 MainPID)
((pid1 > 0)) || fail "no MainPID after start"
systemctl --user start paperclip@t1.service || fail "second systemctl --user start exited $?"
pid2=$(prop t1 MainPID)
prop_is t1 ActiveState active || fail "ActiveState=$(prop t1 ActiveState) after the second start"
[[ $pid1 == "$pid2" ]] || fail "MainPID changed from $pid1 to $pid2 on the second start"
starts=$(wc -l <"$STATE_ROOT/t1/starts")
result "main_pid=$pid1 fixture_starts=$starts"
((starts == 1)) || fail "the fixture was started $starts times: $(tr '\n' ' ' <"$STATE_ROOT/t1/starts")"
log "ok"
