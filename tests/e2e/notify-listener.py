#!/usr/bin/env python3
"""A NOTIFY_SOCKET for the e2e test: binds a datagram socket at PATH and logs
every assignment of every datagram as `<CLOCK_MONOTONIC ns> <seq> KEY=VALUE`
to LOG (line-buffered). Exits on SIGTERM.

    notify-listener.py PATH LOG
"""
import os
import signal
import socket
import sys
import time

path, log = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
old = os.umask(0o177)  # only our user may send
s.bind(path)
os.umask(old)
with open(log, "a", buffering=1) as f:
    seq = 0
    while True:
        data = s.recv(65536)
        t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        seq += 1
        for line in data.decode("utf-8", "replace").split("\n"):
            if line:
                f.write(f"{t} {seq} {line}\n")
