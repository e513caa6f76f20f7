#!/usr/bin/env bash
# 3. `paperclipd run -i t1` by hand while paperclip@t1.service is active
# exits 75, names the unit, and starts no server (the manual run's fixture
# would use PORT2, so a port conflict cannot be what refuses it).
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"
: "${PORT2:?PORT2 must be set}"

write_config t1
install_unit t1
systemctl --user start paperclip@t1.service || fail "systemctl --user start exited $?"
pid1=$(prop t1 MainPID)

manual_state=$HOME/manual-state
rc=0
timeout -k 5 20 "$PAPERCLIPD" run -i t1 -- "$PYTHON3" "$FIXTURE" --port "$PORT2" --state-dir "$manual_state" \
  </dev/null >"$HOME/manual.out" 2>"$HOME/manual.err" || rc=$?
log "manual run exited $rc"
echo "----- manual run stderr:" >&2
cat "$HOME/manual.err" >&2
result "manual_exit=$rc"
((rc == 75)) || fail "manual paperclipd run exited $rc (want 75)"
grep -q 'paperclip@t1\.service' "$HOME/manual.err" || fail "stderr of the manual run does not name paperclip@t1.service"
[[ ! -e $manual_state/pid ]] || fail "the manual run started a server (pid $(cat "$manual_state/pid"))"
prop_is t1 ActiveState active || fail "the unit is $(prop t1 ActiveState) after the manual run"
[[ $(prop t1 MainPID) == "$pid1" ]] || fail "MainPID changed from $pid1 to $(prop t1 MainPID)"
log "ok"
