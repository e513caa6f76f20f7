# paperclipd: the system unit runs as the dedicated user `paperclip`.
getent group paperclip >/dev/null || groupadd -r paperclip
getent passwd paperclip >/dev/null || \
    useradd -r -g paperclip -d /var/lib/paperclip -s /sbin/nologin -c "Paperclip (paperclipd)" paperclip
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
