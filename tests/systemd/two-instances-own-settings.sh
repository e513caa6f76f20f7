#!/usr/bin/env bash
# Issue 19 items 1, 2 and 6. Two instances with different homes and
# Node.js versions (nvm's, and fnm's per-shell link): each keeps its own
# home and node across a daemon-reload and a restart of both; the shared
# template holds nothing of either; fnm's per-shell directory is never
# pinned; the server's PATH is the pinned directories, then the manager's
# (with /snap/bin); uninstalling one leaves the other as it was.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/systemd/layouts.sh
source "$(dirname "$0")/layouts.sh"

make_layouts
B_HOME=$HOME/b-home
onboarded "$HOME/.paperclip" a "$PORT"
onboarded "$B_HOME" b "$PORT2"
systemctl --user set-environment PATH=/snap/bin:/usr/local/bin:/usr/bin:/bin

PATH=$NVM_BIN:$PATH "$PAPERCLIPD" install -i a 2>"$HOME/install-a.err" || fail "install -i a exited $?: $(cat "$HOME/install-a.err")"
PATH=$FNM_SHELL/bin:$PATH "$PAPERCLIPD" install -i b --home "$B_HOME" 2>"$HOME/install-b.err" || fail "install -i b exited $?: $(cat "$HOME/install-b.err")"
grep -q 'version manager' "$HOME/install-b.err" || fail "install did not warn that the pinned node is a version manager's: $(cat "$HOME/install-b.err")"
grep -q 'paperclipd install --node' "$HOME/install-b.err" || fail "install did not say how to re-pin: $(cat "$HOME/install-b.err")"

for var in PAPERCLIP_HOME PAPERCLIP_NODE PAPERCLIP_SHIM_PATH 'PATH='; do
  ! grep -q "^Environment=$var" "$TEMPLATE" || fail "the shared template carries $var"
done
! grep -q fnm_multishells "$UNIT_DIR"/paperclip@*.service.d/*.conf || fail "fnm's per-shell directory was pinned"

check() {  # check ROUND
  local id want_node want_home p
  for id in a b; do
    wait_for 20 "paperclip@$id ready ($1)" prop_is "$id" ActiveState active
    case $id in
      a) want_node=$NVM_BIN/node want_home=$HOME/.paperclip ;;
      b) want_node=$FNM_VERSION_DIR/bin/node want_home=$B_HOME ;;
    esac
    [[ $(state_file "$id" node) == "$want_node" ]] || fail "$1: $id ran node $(state_file "$id" node), not $want_node"
    [[ $(state_file "$id" home) == "$want_home" ]] || fail "$1: $id ran with PAPERCLIP_HOME=$(state_file "$id" home), not $want_home"
    p=$(state_file "$id" path)
    [[ $p == "$(dirname "$want_node")":* ]] || fail "$1: $id's PATH does not start with its node's directory: $p"
    [[ :$p: == *:/snap/bin:* ]] || fail "$1: $id's PATH lost the manager's /snap/bin: $p"
    result_text "path_${id}_$1" "$p"
  done
}

systemctl --user start paperclip@a.service paperclip@b.service || fail "start exited $?"
check start
systemctl --user daemon-reload
rm -f "$STATE_ROOT"/{a,b}/node
systemctl --user restart paperclip@a.service paperclip@b.service || fail "restart exited $?"
check restart

"$PAPERCLIPD" uninstall -i b --home "$B_HOME" 2>/dev/null || fail "uninstall -i b exited $?"
[[ ! -e $UNIT_DIR/paperclip@b.service.d ]] || fail "uninstall left $(ls "$UNIT_DIR/paperclip@b.service.d")"
rm -f "$STATE_ROOT"/a/node
systemctl --user restart paperclip@a.service || fail "restart of a after uninstall of b exited $?"
check_a() { wait_for 20 "a ready" prop_is a ActiveState active; [[ $(state_file a node) == "$NVM_BIN/node" ]]; }
check_a || fail "after uninstall -i b, a ran $(state_file a node)"
result "ok=yes"
log "ok"
