# Shared helpers for the scenario scripts in this directory. Sourced (not
# run) by each scenario, which runs INSIDE `tests/support/with-user-manager`
# (a private, real `systemd --user`), started by `tests/systemd.rs`.
#
# Inputs (environment):
#   PAPERCLIPD  absolute path of the paperclipd binary under test
#   FIXTURE     absolute path of tests/fixture/server.py
#   PORT        a free TCP port for the fixture (PORT2: a second one)
#   PYTHON3     absolute path of python3 (the manager's PATH is minimal)
#   PCD_TEST_HANDWRITTEN_UNIT=1  (debugging only) write the unit by hand
#               instead of `paperclipd install`, to tell a bug in `install`
#               from one in `run`. tests/systemd.rs removes it: the tests
#               always use the real `paperclipd install`.
#
# Output: progress lines `+ <elapsed> ...` on stderr; `RESULT k=v k2=v2`
# (values without spaces) and `RESULT_TEXT key=free text` lines on stdout,
# which the Rust side asserts on; on failure `FAIL: ...` plus a dump of the
# unit's properties, its journal and the fixture's state files.

set -euo pipefail

: "${PAPERCLIPD:?PAPERCLIPD must be set}" "${FIXTURE:?FIXTURE must be set}" "${PORT:?PORT must be set}"
PYTHON3=${PYTHON3:-/usr/bin/python3}
UNIT_DIR=${XDG_CONFIG_HOME:?}/systemd/user
TEMPLATE=$UNIT_DIR/paperclip@.service
STATE_ROOT=$HOME/fixture-state
T0=$EPOCHREALTIME
DUMP_IDS=()

# Microseconds since the epoch, of now or of a "SECONDS.FRACTION" string.
us() {
  local t=${1:-$EPOCHREALTIME} frac
  [[ $t == *.* ]] || t+=.
  frac=${t#*.}000000
  echo $((10#${t%%.*} * 1000000 + 10#${frac:0:6}))
}
# "S.mmm" seconds from time $1 to $2 (default now), both as `us` accepts.
elapsed() {
  local d=$(($(us "${2:-}") - $(us "$1")))
  printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}
log() { echo "+ $(elapsed "$T0")s $*" >&2; }
# result "k=v k2=v2" (values without spaces); result_text KEY "free text".
result() { printf 'RESULT %s\n' "$*"; }
result_text() { printf 'RESULT_TEXT %s=%s\n' "$1" "$(tr '\n' ' ' <<<"$2")"; }

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Dump everything useful about the instances in DUMP_IDS (on failure).
dump() {
  local id f
  for id in "${DUMP_IDS[@]}"; do
    echo "----- paperclip@$id.service properties" >&2
    systemctl --user show -p ActiveState -p SubState -p Result -p MainPID -p NRestarts \
      -p ExecMainCode -p ExecMainStatus -p StatusText -p UnitFileState -p FragmentPath \
      -p DropInPaths -p WatchdogUSec -p Restart "paperclip@$id.service" >&2 2>&1 || true
    echo "----- journal of paperclip@$id.service" >&2
    journalctl --user-unit "paperclip@$id.service" --no-pager -o short-precise -n 60 >&2 2>&1 || true
    for f in "$STATE_ROOT/$id"/*; do
      [[ -f $f ]] || continue
      echo "----- fixture state $f: $(head -c 400 "$f" | tr '\n' ' ')" >&2
    done
  done
  if [[ -f $TEMPLATE ]]; then
    echo "----- $TEMPLATE" >&2
    cat "$TEMPLATE" >&2
  fi
}
on_exit() {
  local rc=$?
  if [[ $rc != 0 ]]; then
    echo "scenario failed (exit $rc) at $(elapsed "$T0")s" >&2
    dump
  fi
  exit "$rc"
}
trap on_exit EXIT

# wait_for SECONDS DESCRIPTION COMMAND... — poll COMMAND every 50 ms until it
# succeeds; fail after SECONDS.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$(($(us) + secs * 1000000))
  until "$@"; do
    (($(us) > deadline)) && fail "timed out after ${secs}s waiting for $what"
    sleep 0.05
  done
}

prop() { systemctl --user show -P "$2" "paperclip@$1.service"; }
prop_is() { [[ $(prop "$1" "$2") == "$3" ]]; }
prop_ge() { local v; v=$(prop "$1" "$2"); [[ $v =~ ^[0-9]+$ ]] && ((v >= $3)); }
pid_alive() {
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}
pid_gone() { ! pid_alive "$1"; }
state_file() { cat "$STATE_ROOT/$1/$2" 2>/dev/null; }

# write_config ID [FIXTURE ARGS...] — the instance's paperclipd.toml; the
# fixture records into $STATE_ROOT/ID. Extra toml lines: $EXTRA_TOML.
write_config() {
  local id=$1
  shift
  local dir=$HOME/.paperclip/instances/$id a
  local cmd="\"$PYTHON3\", \"$FIXTURE\", \"--port\", \"$PORT\", \"--state-dir\", \"$STATE_ROOT/$id\""
  for a in "$@"; do cmd+=", \"$a\""; done
  mkdir -p "$dir"
  printf 'command = [%s]\nurl = "http://127.0.0.1:%s"\n%s\n' "$cmd" "$PORT" "${EXTRA_TOML:-}" >"$dir/paperclipd.toml"
  DUMP_IDS+=("$id")
}

# dropin ID TEXT — a test drop-in for one instance, then daemon-reload.
dropin() {
  mkdir -p "$UNIT_DIR/paperclip@$1.service.d"
  printf '[Service]\n%s\n' "$2" >"$UNIT_DIR/paperclip@$1.service.d/test.conf"
  systemctl --user daemon-reload
}

# install_unit ID — `paperclipd install -i ID` (no --now): writes the
# template, reloads, enables; the unit must be loaded and inactive after.
install_unit() {
  local id=$1
  if [[ ${PCD_TEST_HANDWRITTEN_UNIT:-0} == 1 ]]; then
    log "WARNING: hand-written unit instead of paperclipd install (PCD_TEST_HANDWRITTEN_UNIT=1)"
    mkdir -p "$UNIT_DIR"
    cat >"$TEMPLATE" <<UNIT
[Unit]
Description=Paperclip instance %i

[Service]
Type=notify
NotifyAccess=main
ExecStart=$PAPERCLIPD run --instance %i
KillMode=mixed
Restart=on-failure
WatchdogSec=60s
RestartPreventExitStatus=75 78 126 127

[Install]
WantedBy=default.target
UNIT
    systemctl --user daemon-reload
    systemctl --user enable "paperclip@$id.service" 2>/dev/null
  else
    "$PAPERCLIPD" install -i "$id" || fail "paperclipd install -i $id exited $?"
  fi
  [[ -f $TEMPLATE ]] || fail "paperclipd install did not write $TEMPLATE"
  prop_is "$id" LoadState loaded || fail "paperclip@$id.service is not loaded: $(prop "$id" LoadState)"
  local en
  en=$(systemctl --user is-enabled "paperclip@$id.service" 2>&1) || fail "paperclip@$id.service is not enabled after install: $en"
  prop_is "$id" ActiveState inactive || fail "install without --now started paperclip@$id.service: $(prop "$id" ActiveState)"
  log "installed paperclip@$id.service"
}
