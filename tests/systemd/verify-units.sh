#!/usr/bin/env bash
# 8. `systemd-analyze verify` accepts the units paperclipd ships:
#   * the user template written by `paperclipd install` (rc 0, no warning
#     about it), both as the template file and as an instance name; its
#     settings are the documented ones (checked through `systemctl show`);
#   * the system template units/systemd/system/paperclip@.service, with its
#     @PAPERCLIPD@ placeholder replaced by the real binary path (and the
#     @ENVIRONMENT@ line dropped) in a temp copy. `systemd-analyze verify` does not resolve User=/Group= (checked
#     by hand: a nonexistent user passes), so no user is created.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"
: "${REPO:?REPO (the source tree) must be set}"

# verify_ok LABEL ARGS... — systemd-analyze ARGS must exit 0 and print
# nothing about a paperclip unit (syntax warnings exit 0 too).
verify_ok() {
  local label=$1 out rc=0
  shift
  out=$(systemd-analyze "$@" 2>&1) || rc=$?
  log "systemd-analyze $* -> $rc${out:+: $out}"
  ((rc == 0)) || fail "$label: systemd-analyze $* exited $rc: $out"
  if grep -i 'paperclip@' <<<"$out"; then fail "$label: systemd-analyze warned about the unit: $out"; fi
  result "verify_$label=ok"
}

EXTRA_TOML='stop_timeout = "100s"' write_config t1
install_unit t1
dropin_file=$UNIT_DIR/paperclip@t1.service.d/paperclipd.conf
[[ -f $dropin_file ]] || fail "install wrote no drop-in $dropin_file"
verify_ok user_template --user verify "$TEMPLATE"
verify_ok user_instance --user verify paperclip@t1.service

# The documented settings, as systemd parsed them.
want() {
  local got
  got=$(prop t1 "$1")
  [[ $got == "$2" ]] || fail "installed unit: $1=$got (want $2)"
}
want Type notify
want NotifyAccess main
want KillMode mixed
want Restart on-failure
# A watchdog timeout is an ordered stop (SIGTERM = 15), then a restart.
want WatchdogSignal 15
want OOMPolicy continue
# The instance's stop_timeout (100 s) plus paperclipd's 15 s margin, from
# the drop-in `install` wrote.
want TimeoutStopUSec "1min 55s"
# No hardening that breaks agents in the user unit, no network-online.target.
want NoNewPrivileges no
want UMask 0022
want LockPersonality no
want SystemCallArchitectures ""
[[ $(prop t1 After) != *network-online* ]] || fail "the user unit orders After=network-online.target"
[[ $(prop t1 Wants) != *network-online* ]] || fail "the user unit Wants=network-online.target"
rpes=$(prop t1 RestartPreventExitStatus)
for code in 73 75 78 126 127; do
  [[ " $rpes " == *" $code "* ]] || fail "RestartPreventExitStatus=$rpes lacks $code"
done
exec_start=$(prop t1 ExecStart)
bin=$(readlink -f "$PAPERCLIPD")
[[ $exec_start == *"path=$bin ;"* || $exec_start == *"path=$PAPERCLIPD ;"* ]] ||
  fail "ExecStart does not run $bin: $exec_start"
[[ $exec_start == *"argv[]=$bin run --instance t1 ;"* || $exec_start == *"argv[]=$PAPERCLIPD run --instance t1 ;"* ]] ||
  fail "ExecStart is not '$bin run --instance %i': $exec_start"
grep -Eq '^WatchdogSec=' "$TEMPLATE" || fail "the template has no WatchdogSec= line"
result_text exec_start "$exec_start"

# The system unit, rendered.
src=$REPO/units/systemd/system/paperclip@.service
[[ -f $src ]] || fail "the system unit $src does not exist"
grep -q '@PAPERCLIPD@' "$src" || fail "$src has no @PAPERCLIPD@ placeholder"
rendered_dir=$(mktemp -d "$HOME/system-unit.XXXXXX")
# As `paperclipd install --system` renders it: the binary's path, and the
# @ENVIRONMENT@ line replaced by the installer's Environment= lines (none here).
limit() { sed -n "s/^pub const $1: [a-z0-9]* = \([0-9]*\);$/\1/p" "$REPO/src/config/mod.rs"; }
sed -e "s|@PAPERCLIPD@|$bin|g" -e '/^@ENVIRONMENT@$/d' -e "s|@START_LIMIT_BURST@|$(limit START_LIMIT_BURST)|" \
  -e "s|@START_LIMIT_INTERVAL@|$(limit START_LIMIT_INTERVAL_SECS)|" "$src" >"$rendered_dir/paperclip@.service"
if grep -n '@[A-Z_]*@' "$rendered_dir/paperclip@.service"; then fail "placeholders left after rendering $src"; fi
user=$(sed -n 's/^User=//p' "$rendered_dir/paperclip@.service" | tail -1)
if [[ -n $user ]]; then
  if getent passwd "$user" >/dev/null; then u=exists; else u=missing; fi
  log "system unit runs as User=$user ($u on this machine; verify does not need it)"
  result "system_unit_user=$user user_$u"
fi
grep -q '^WatchdogSignal=SIGTERM$' "$src" || fail "$src lacks WatchdogSignal=SIGTERM"
grep -q '^OOMPolicy=continue$' "$src" || fail "$src lacks OOMPolicy=continue"
grep -q '^Environment=PAPERCLIPD_PATH_PREPEND=/var/lib/paperclip/.local/bin' "$src" || fail "$src: the PATH prepend lacks the paperclip user's ~/.local/bin"
! grep -q '^Environment=PATH=' "$src" || fail "$src: replaces the manager's PATH"
verify_ok system_template verify "$rendered_dir/paperclip@.service"
verify_ok system_instance verify "$rendered_dir/paperclip@t1.service"
log "ok"
