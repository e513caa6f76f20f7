#!/usr/bin/env bash
# Issue 19 item 5. The unit as a package installs it (the template with no
# pin, no `paperclipd install`) and a user manager whose PATH has no node:
# after one `paperclipd run` in the user's terminal (nvm's node first in
# its PATH), `systemctl --user start` gets ready on that node, and both
# `status` and the unit's log say the runtime was recorded by that run.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/systemd/layouts.sh
source "$(dirname "$0")/layouts.sh"

make_layouts
# No node on the manager's PATH (this machine's own node, if any, is not
# in /usr/local/bin:/usr/bin:/bin's reach for the fake shim's `env node`
# to matter: the recorded one must come first).
systemctl --user set-environment PATH=/snap/bin:/usr/bin:/bin
mkdir -p "$UNIT_DIR"
sed -e "s|@PAPERCLIPD@|$PAPERCLIPD|" -e '/^@ENVIRONMENT@$/d' "$REPO/units/systemd/user/paperclip@.service" >"$TEMPLATE"
systemctl --user daemon-reload
onboarded "$HOME/.paperclip" p "$PORT"

# The terminal run: nvm's node first in the shell's PATH.
env -u INVOCATION_ID -u NOTIFY_SOCKET PATH="$NVM_BIN:/usr/bin:/bin" \
  "$PAPERCLIPD" run -i p >"$HOME/run.out" 2>"$HOME/run.err" &
rpid=$!
ready_or_dead() { grep -q 'ready after' "$HOME/run.err" || ! kill -0 "$rpid" 2>/dev/null; }
deadline=$(($(us) + 30000000))
until ready_or_dead; do
  (($(us) < deadline)) || fail "the terminal run is not ready after 30 s: $(cat "$HOME/run.err") $(ls -la "$STATE_ROOT"/p 2>&1)"
  sleep 0.05
done
grep -q 'ready after' "$HOME/run.err" || fail "the terminal run did not get ready: $(cat "$HOME/run.err")"
[[ $(state_file p node) == "$NVM_BIN/node" ]] || fail "the terminal run ran $(state_file p node)"
kill -TERM "$rpid"
wait "$rpid" || fail "the terminal run exited $? on SIGTERM: $(cat "$HOME/run.err")"
rm -f "$STATE_ROOT/p/node"
ls "$HOME/.paperclip/instances/p/" >&2

systemctl --user start paperclip@p.service || fail "systemctl --user start exited $?"
prop_is p ActiveState active || fail "the unit is $(prop p ActiveState)"
[[ $(state_file p node) == "$NVM_BIN/node" ]] || fail "the service ran node $(state_file p node), not the recorded $NVM_BIN/node"
p=$(state_file p path)
[[ :$p: == *:/snap/bin:* ]] || fail "the service's PATH lost the manager's /snap/bin: $p"
journal=$(journalctl --user-unit paperclip@p.service --no-pager -o cat)
grep -q 'recorded by the run' <<<"$journal" || fail "the log does not say the runtime was recorded by the terminal run: $journal"
st=$("$PAPERCLIPD" status -i p 2>&1) || fail "status exited $?: $st"
grep -q 'recorded by the run at' <<<"$st" || fail "status does not say where the runtime came from: $st"
result_text status "$st"
systemctl --user stop paperclip@p.service
result "ok=yes"
log "ok"
