#!/usr/bin/env bash
# 10. `paperclipd start` of an instance that cannot become ready exits 1 with
# the unit's state, exit status 69, StatusText and the last journal lines;
# `paperclipd logs` shows the instance's journal.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

EXTRA_TOML='ready_timeout = "2s"' write_config f1 --ui-mode 404
install_unit f1
dropin f1 'Restart=no'
rc=0
"$PAPERCLIPD" start -i f1 >"$HOME/start.out" 2>"$HOME/start.err" || rc=$?
log "paperclipd start exited $rc"
cat "$HOME/start.err" >&2
result "start_exit=$rc"
((rc == 1)) || fail "paperclipd start exited $rc (want 1)"
grep -q 'exit status 69' "$HOME/start.err" || fail "the report lacks the exit status 69"
grep -q 'paperclip@f1.service' "$HOME/start.err" || fail "the report does not name the unit"
# The journal is asynchronous: the lines may lag the job's end a little.
logs_have() { "$PAPERCLIPD" logs -i f1 -n 200 2>/dev/null | grep -q "$1"; }
wait_for 15 "the readiness timeout in paperclipd logs" logs_have 'readiness timeout'
wait_for 15 "the UI probe's last result in paperclipd logs" logs_have "UI http://127.0.0.1:$PORT/ → 404"
log "ok"
