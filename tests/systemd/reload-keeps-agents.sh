#!/usr/bin/env bash
# `systemctl --user reload paperclip@bar` is a hot restart: the agent run
# survives, the server is replaced, the unit stays active the whole time,
# and the reload job returns only once the new server is ready.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config bar --hot-restart --agent --api-ok-after 0.8
install_unit bar
systemctl --user start paperclip@bar.service || fail "systemctl --user start exited $?"
main=$(prop bar MainPID)
old=$(state_file bar pid) || fail "the fixture never ran"
agent=$(state_file bar agent.pid) || fail "the fixture started no agent"
run_id=$(state_file bar agent.run)
# Watch ActiveState during the reload: it must never leave active/reloading.
states=$HOME/states
(while :; do prop bar ActiveState >>"$states"; sleep 0.05; done) &
watcher=$!
t_reload=$EPOCHREALTIME
systemctl --user reload paperclip@bar.service || fail "systemctl --user reload exited $?"
result "reload_seconds=$(elapsed "$t_reload")"
kill "$watcher"
wait "$watcher" 2>/dev/null || true
seen=$(sort -u "$states" | tr '\n' ' ')
result_text states_seen "$seen"
grep -qvE '^(active|reloading)$' "$states" && fail "the unit left active during the reload: $seen"
new=$(state_file bar pid)
[[ $new != "$old" ]] || fail "the server was not replaced (pid $old)"
pid_gone "$old" || fail "the old server $old still runs"
pid_alive "$agent" || fail "the agent $agent did not survive the reload"
[[ $(prop bar MainPID) == "$main" ]] || fail "paperclipd was replaced: MainPID $main -> $(prop bar MainPID)"
prop_is bar ActiveState active || fail "ActiveState=$(prop bar ActiveState) after the reload"
adopted=$(state_file bar adopted) || fail "the new server adopted nothing"
[[ $adopted == "$run_id" ]] || fail "adopted '$adopted', want '$run_id'"
ready_at=$(state_file bar ready_at)
result "new_server_ready_at=$ready_at reload_returned_at=$EPOCHREALTIME"
(($(us) >= $(us "$ready_at"))) || fail "the reload returned before the new server was ready"
systemctl --user stop paperclip@bar.service || fail "systemctl --user stop exited $?"
pid_gone "$agent" || fail "the agent outlived the stop"
log "ok"
