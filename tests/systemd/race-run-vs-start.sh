#!/usr/bin/env bash
# 12. `paperclipd run` by hand racing `systemctl --user start` for the same
# instance, 5 rounds: exactly one server each round, whoever wins.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config r1
install_unit r1
dropin r1 'Restart=no'
for round in 1 2 3 4 5; do
  before=$(wc -l <"$STATE_ROOT/r1/starts" 2>/dev/null || echo 0)
  systemctl --user start paperclip@r1.service 2>/dev/null &
  sc=$!
  "$PAPERCLIPD" run -i r1 </dev/null >"$HOME/run$round.out" 2>"$HOME/run$round.err" &
  run=$!
  wait "$sc" || true
  # One of them serves; the loser exits 75 (the unit's run, or ours).
  one_server() { [[ -e $STATE_ROOT/r1/ready_at ]] && curl_ok; }
  curl_ok() { "$PYTHON3" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/api/health', timeout=2)" 2>/dev/null; }
  wait_for 20 "a server to answer" one_server
  after=$(wc -l <"$STATE_ROOT/r1/starts")
  servers=$((after - before))
  unit_state=$(prop r1 ActiveState)
  if kill -0 "$run" 2>/dev/null; then manual=running; else manual=exited; fi
  log "round $round: servers started=$servers unit=$unit_state manual=$manual"
  ((servers == 1)) || fail "round $round: $servers servers started"
  # Stop whichever runs, and wait for both contenders to be gone.
  systemctl --user stop paperclip@r1.service
  kill -TERM "$run" 2>/dev/null || true
  wait "$run" || true
  systemctl --user reset-failed paperclip@r1.service 2>/dev/null || true
  fpid=$(state_file r1 pid)
  wait_for 20 "the server to be gone" pid_gone "$fpid"
done
result "rounds=5"
log "ok"
