# paperclipd %preun: $1 is 0 when the package is erased (not upgraded): stop
# the system instances, which would otherwise keep running from a deleted
# binary. User instances belong to their users' managers and are left.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    for unit in $(systemctl list-units --plain --no-legend --state=active,activating,reloading 'paperclip@*.service' 2>/dev/null | awk '{ print $1 }'); do
        echo "paperclipd: stopping $unit (the package is being removed)"
        systemctl stop "$unit" || :
    done
fi
