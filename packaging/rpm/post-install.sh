# paperclipd %post: the system unit runs as the dedicated user `paperclip`,
# whose home /var/lib/paperclip exists from the install on (upstream's
# installer writes there before the unit ever starts). $1 is 1 on install,
# 2 or more on upgrade.
getent group paperclip >/dev/null || groupadd -r paperclip
getent passwd paperclip >/dev/null || \
    useradd -r -g paperclip -d /var/lib/paperclip -M -s /sbin/nologin -c "Paperclip (paperclipd)" paperclip
[ -d /var/lib/paperclip ] || install -d -o paperclip -g paperclip -m 0700 /var/lib/paperclip
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
