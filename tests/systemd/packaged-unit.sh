#!/usr/bin/env bash
# The unit a package installs (/usr/lib/systemd/user/paperclip@.service, no
# `paperclipd install`): systemctl --user start returns once ready, status
# agrees, stop is clean. Run by packaging/check.sh after `dpkg -i`.
# shellcheck source=tests/systemd/lib.sh
source "$(dirname "$0")/lib.sh"

write_config pkg --listen-after 0.3 --api-ok-after 0.6
frag=$(prop pkg FragmentPath)
[[ $frag == /usr/lib/systemd/user/paperclip@.service ]] || fail "the unit comes from $frag, not the package"
systemctl --user start paperclip@pkg.service || fail "systemctl --user start exited $?"
prop_is pkg ActiveState active || fail "the unit is $(prop pkg ActiveState)"
[[ $(prop pkg StatusText) == ready* ]] || fail "StatusText: $(prop pkg StatusText)"
"$PAPERCLIPD" status -i pkg >/dev/null || fail "paperclipd status exited $?"
fpid=$(state_file pkg pid)
systemctl --user stop paperclip@pkg.service
prop_is pkg ActiveState inactive || fail "after stop the unit is $(prop pkg ActiveState)"
pid_gone "$fpid" || fail "the server $fpid outlived the stop"
log "ok"
