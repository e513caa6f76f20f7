#!/usr/bin/env bash
# 9. Upstream's own unit for the same instance (paperclipai-u1.service for
# instance u1): `run` and `install` refuse (75) naming it, `status` says
# conflict, and `install --replace-upstream --now` stops and disables it and
# starts ours.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config u1
mkdir -p "$UNIT_DIR"
cat >"$UNIT_DIR/paperclipai-u1.service" <<UNIT
[Unit]
Description=stand-in for upstream's paperclipai service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=default.target
UNIT
systemctl --user daemon-reload
systemctl --user enable --now paperclipai-u1.service 2>/dev/null
upstream_active() { [[ $(systemctl --user show -P ActiveState paperclipai-u1.service) == active ]]; }
wait_for 10 "upstream stand-in active" upstream_active

rc=0
timeout -k 5 20 "$PAPERCLIPD" run -i u1 </dev/null >"$HOME/run.out" 2>"$HOME/run.err" || rc=$?
result "run_exit=$rc"
((rc == 75)) || fail "run beside upstream's unit exited $rc (want 75): $(cat "$HOME/run.err")"
grep -q 'paperclipai-u1\.service' "$HOME/run.err" || fail "run's error does not name paperclipai-u1.service: $(cat "$HOME/run.err")"
[[ ! -e $STATE_ROOT/u1/pid ]] || fail "run started a server beside upstream's unit"

rc=0
"$PAPERCLIPD" install -i u1 >"$HOME/install.out" 2>"$HOME/install.err" || rc=$?
result "install_exit=$rc"
((rc == 75)) || fail "install beside upstream's unit exited $rc (want 75): $(cat "$HOME/install.err")"
grep -q 'replace-upstream' "$HOME/install.err" || fail "install's error does not mention --replace-upstream"
[[ ! -e $TEMPLATE ]] || fail "install wrote $TEMPLATE although it refused"

rc=0
"$PAPERCLIPD" status -i u1 --json >"$HOME/status.json" || rc=$?
state=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$HOME/status.json")
result "status_exit=$rc status_state=$state"
[[ $state == conflict && $rc == 1 ]] || fail "status says $state (exit $rc), want conflict (exit 1)"

"$PAPERCLIPD" install -i u1 --now --replace-upstream || fail "install --replace-upstream --now exited $?"
[[ $(systemctl --user show -P ActiveState paperclipai-u1.service) == inactive ]] || fail "upstream's unit is still $(systemctl --user show -P ActiveState paperclipai-u1.service)"
en=$(systemctl --user is-enabled paperclipai-u1.service 2>/dev/null || true)
[[ $en == disabled ]] || fail "upstream's unit is $en after --replace-upstream"
prop_is u1 ActiveState active || fail "ours is $(prop u1 ActiveState) after install --now"
result "upstream_enabled=$en"
log "ok"
