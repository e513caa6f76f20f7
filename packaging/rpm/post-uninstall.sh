# paperclipd %postun: $1 is 0 after an erase, 1 or more after an upgrade.
# The user `paperclip` and /var/lib/paperclip are kept (a removed user's uid
# could be reused and would then own the data). After an upgrade, running
# system instances are restarted onto the new binary.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        for unit in $(systemctl list-units --plain --no-legend --state=active 'paperclip@*.service' 2>/dev/null | awk '{ print $1 }'); do
            echo "paperclipd: upgraded; restarting $unit onto the new binary (systemctl try-restart)"
            systemctl try-restart "$unit" || :
        done
    fi
fi
